"""The tools the deployment checks run, built from the Go module proxy into .cache/tools/bin
(helm, kubeconform, promtool), and the JSON schemas kubeconform validates against, generated
offline into .cache/k8s-schemas from the Kubernetes OpenAPI v3 documents that the
k8s.io/kubernetes module carries and from the prometheus-operator CRDs. Each step runs only
when its output is missing or was made from another version.

    python -m tests.support.deploy_tools      # install what is missing, print the paths
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
BIN = CACHE / "tools" / "bin"
SCHEMAS = CACHE / "k8s-schemas"

TOOLS = {
    "helm": "helm.sh/helm/v4/cmd/helm@v4.3.2",
    "kubeconform": "github.com/yannh/kubeconform/cmd/kubeconform@v0.8.0",
    "promtool": "github.com/prometheus/prometheus/cmd/promtool@v0.316.0",
}
BUILD_TAGS = {"promtool": "remove_all_sd"}
"""Build tags per tool. promtool without its service discoveries: they bring the cloud SDKs
(AWS, Azure, GCE, ...) and take most of its build (about 29 minutes on a cold cache here,
beside other work); ``check rules`` needs none of them."""
KUBERNETES = "k8s.io/kubernetes@v1.37.2"
"""Its api/openapi-spec/v3 holds the OpenAPI v3 document of every built-in group-version
(the test data of k8s.io/kubectl and k8s.io/client-go lack policy/v1 and networking/v1)."""
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
"""The newest release of the root module (which carries example/prometheus-operator-crd)
that the module proxy serves."""
CRDS = ("monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml")
SCHEMA_LOCATION = str(SCHEMAS / "{{ .ResourceKind }}{{ .KindSuffix }}.json")
"""kubeconform's -schema-location: the file names below follow its KindSuffix."""


class ToolError(RuntimeError):
    pass


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubeconform: Path
    schema_location: str


def go() -> str:
    found = shutil.which("go")
    if found is None:
        raise ToolError(
            "`go` is not on PATH: the deployment checks build helm, kubeconform and promtool "
            "from the Go module proxy (Go 1.26 or newer; Debian's golang package is too old)"
        )
    return found


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    # -mod=mod: resolve each tool's own go.mod, whatever a surrounding go.work says.
    env.update(GOBIN=str(BIN), GOFLAGS="-mod=mod -buildvcs=false", GOWORK="off")
    return env


def run_go(*args: str) -> str:
    result = subprocess.run(
        [go(), *args], env=go_env(), cwd=CACHE, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ToolError(f"go {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result.stdout


def stamp(path: Path) -> Path:
    return path.with_name(path.name + ".version")


def is_current(path: Path, version: str) -> bool:
    marker = stamp(path)
    return path.exists() and marker.exists() and marker.read_text() == version


def install_tool(name: str) -> Path:
    package = TOOLS[name]
    binary = BIN / name
    tags = BUILD_TAGS.get(name, "")
    built_as = f"{package} {tags}".strip()
    if is_current(binary, built_as):
        return binary
    BIN.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # -trimpath -s -w: smaller binaries, same behaviour.
    run_go("install", "-trimpath", "-ldflags=-s -w", f"-tags={tags}", package)
    stamp(binary).write_text(built_as)
    print(f"built {package} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return binary


def module_dir(module: str) -> Path:
    info = json.loads(run_go("mod", "download", "-json", module))
    return Path(info["Dir"])


# --- schemas in kubeconform's standalone-strict layout -------------------------------------


def schema_file(kind: str, group: str, version: str) -> str:
    """kubeconform's KindSuffix: the group's first label (none for the core group)."""
    parts = [kind.lower()]
    if group:
        parts.append(group.split(".")[0].lower())
    parts.append(version.lower())
    return "-".join(parts) + ".json"


def strict(node: Any, required: bool = True) -> Any:
    """Closes every object that lists its properties (additionalProperties: false) unless it
    preserves unknown fields, lets optional properties be null, and spells int-or-string as
    JSON Schema: what kubeconform's openapi2jsonschema does for -strict schemas."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in {"description", "x-kubernetes-group-version-kind"}:
            continue
        if key == "properties" and isinstance(value, dict):
            needed = set(node.get("required", []))
            out[key] = {name: strict(sub, name in needed) for name, sub in value.items()}
        elif key in {"default", "example", "enum"}:
            out[key] = value
        else:
            out[key] = strict(value)
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    nullable = out.pop("nullable", False)
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if isinstance(out.get("type"), str) and (nullable or not required):
        out["type"] = [out["type"], "null"]
    return out


class Inliner:
    """Replaces each $ref of an OpenAPI v3 document by the schema it names, so that every
    generated file stands alone. A reference back into itself (JSONSchemaProps) accepts any
    value where it recurses."""

    def __init__(self, schemas: dict[str, Any]) -> None:
        self.schemas = schemas
        self.done: dict[str, Any] = {}
        self.open: set[str] = set()

    def ref(self, pointer: str) -> Any:
        name = pointer.rsplit("/", 1)[-1]
        if name in self.done:
            return self.done[name]
        if name in self.open:
            return {}
        self.open.add(name)
        expanded = self.inline(self.schemas[name])
        self.open.discard(name)
        self.done[name] = expanded
        return expanded

    def inline(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        # JSONSchemaProps has a property named $ref: only a string is a reference.
        if isinstance(node.get("$ref"), str):
            return self.ref(node["$ref"])
        all_of = node.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0].get("$ref"), str):
            # {allOf: [{$ref}], default: {}, description}: the referenced schema itself.
            merged = dict(self.ref(all_of[0]["$ref"]))
            merged.update({k: v for k, v in node.items() if k not in {"allOf", "default"}})
            return merged
        return {key: self.inline(value) for key, value in node.items()}


def openapi_documents(root: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(group, version, document) for each group-version file: api__v1_openapi.json,
    apis__apps__v1_openapi.json, ..."""
    for path in sorted(root.glob("*_openapi.json")):
        parts = path.name.removesuffix("_openapi.json").split("__")
        if parts[0] == "api" and len(parts) == 2:
            yield "", parts[1], json.loads(path.read_text())
        elif parts[0] == "apis" and len(parts) == 3:
            yield parts[1], parts[2], json.loads(path.read_text())


def write_schema(name: str, schema: Any) -> None:
    (SCHEMAS / name).write_text(json.dumps(schema, separators=(",", ":")))


def generate_kubernetes_schemas(spec_dir: Path) -> int:
    count = 0
    for group, version, document in openapi_documents(spec_dir):
        schemas = document.get("components", {}).get("schemas", {})
        inliner = Inliner(schemas)
        for schema in schemas.values():
            for gvk in schema.get("x-kubernetes-group-version-kind", []):
                # Shared types (DeleteOptions, WatchEvent) name every group-version: each
                # document writes only its own.
                if (gvk.get("group", ""), gvk["version"]) != (group, version):
                    continue
                write_schema(
                    schema_file(gvk["kind"], group, version), strict(inliner.inline(schema))
                )
                count += 1
    return count


def generate_crd_schemas(crd_dir: Path) -> int:
    count = 0
    for name in CRDS:
        for crd in yaml.safe_load_all((crd_dir / name).read_text()):
            if not crd:
                continue
            spec = crd["spec"]
            for served in spec["versions"]:
                schema = served["schema"]["openAPIV3Schema"]
                file = schema_file(spec["names"]["kind"], spec["group"], served["name"])
                write_schema(file, strict(schema))
                count += 1
    return count


def generate_schemas() -> str:
    version = f"{KUBERNETES} {PROMETHEUS_OPERATOR} strict-1"
    marker = SCHEMAS / ".version"
    if marker.exists() and marker.read_text() == version:
        return SCHEMA_LOCATION
    started = time.monotonic()
    if SCHEMAS.exists():
        shutil.rmtree(SCHEMAS)
    SCHEMAS.mkdir(parents=True)
    kubernetes = generate_kubernetes_schemas(module_dir(KUBERNETES) / "api/openapi-spec/v3")
    crds = generate_crd_schemas(module_dir(PROMETHEUS_OPERATOR) / "example/prometheus-operator-crd")
    if not kubernetes or not crds:
        raise ToolError(f"generated {kubernetes} Kubernetes and {crds} CRD schemas: expected both")
    marker.write_text(version)
    elapsed = time.monotonic() - started
    print(f"generated {kubernetes + crds} schemas in {elapsed:.0f}s", file=sys.stderr)
    return SCHEMA_LOCATION


def ensure() -> Tools:
    """helm, kubeconform and the schemas: what the chart's checks need."""
    CACHE.mkdir(exist_ok=True)
    return Tools(
        helm=install_tool("helm"),
        kubeconform=install_tool("kubeconform"),
        schema_location=generate_schemas(),
    )


def ensure_promtool() -> Path:
    CACHE.mkdir(exist_ok=True)
    return install_tool("promtool")


def main() -> int:
    try:
        tools = ensure()
        promtool = ensure_promtool()
    except ToolError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"helm: {tools.helm}")
    print(f"kubeconform: {tools.kubeconform}")
    print(f"promtool: {promtool}")
    print(f"schemas: {SCHEMAS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
