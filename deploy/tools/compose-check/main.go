// compose-check loads a compose file with the Compose Specification's own loader
// (github.com/compose-spec/compose-go), as `docker compose` does, and prints the resolved
// project as JSON. It exits non-zero with the loader's error when the file does not load:
// a schema violation, a bad merge, or a required variable (${VAR:?message}) that is unset.
//
//	compose-check [-env NAME=VALUE]... FILE
//
// Only the variables given with -env are set: the environment of the caller is not read,
// so a check never depends on what happens to be exported.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

type envFlags []string

func (e *envFlags) String() string { return strings.Join(*e, ",") }

func (e *envFlags) Set(value string) error {
	if !strings.Contains(value, "=") {
		return fmt.Errorf("%q is not NAME=VALUE", value)
	}
	*e = append(*e, value)
	return nil
}

func main() {
	var env envFlags
	flag.Var(&env, "env", "NAME=VALUE for interpolation (repeatable)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: compose-check [-env NAME=VALUE]... FILE")
		os.Exit(2)
	}
	file, err := filepath.Abs(flag.Arg(0))
	if err != nil {
		fail(err)
	}
	options, err := cli.NewProjectOptions(
		[]string{file},
		cli.WithWorkingDirectory(filepath.Dir(file)),
		// No .env file and no process environment: exactly the variables given.
		cli.WithEnv(env),
		cli.WithName("compose-check"),
	)
	if err != nil {
		fail(err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	out, err := json.MarshalIndent(project, "", "  ")
	if err != nil {
		fail(err)
	}
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "compose-check:", err)
	os.Exit(1)
}
