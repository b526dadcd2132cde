// The AI SDK's own gateway provider (@ai-sdk/gateway, what a plain model string goes
// through) pointed at Meterline with one line, then: the reference product's first sample,
// unchanged; generateText and streamText on an OpenAI and an Anthropic model; tool call
// round trips; reasoning models; cache reads and writes; two errors the SDK must raise as
// its own classes; then the gateway's metadata calls on what those requests spent.
//
// Every request the SDK sends to the gateway (one step of a call; a tool round trip has
// two) is printed as one JSON line, {"kind": "step", ...}: the call it belongs to, the
// user it was tagged with, its model, its usage as the SDK reports it, the gateway's
// x-meterline-event-id and the provider metadata's generationId. The steps are read from a
// global telemetry integration, so the sample needs no change to be counted. The last line,
// {"kind": "metadata", ...}, is what getSpendReport, getGenerationInfo, getCredits and
// getAvailableModels returned.
//
// Usage: METERLINE_URL=http://127.0.0.1:8080 METERLINE_KEY=ml_... node client.mjs
import { generateText } from 'ai';
import { createGateway, jsonSchema, registerTelemetryIntegration, stepCountIs, streamText, tool } from 'ai';

// The user's one added line:
globalThis.AI_SDK_DEFAULT_PROVIDER = createGateway({ baseURL: `${process.env.METERLINE_URL}/v3/ai`, apiKey: process.env.METERLINE_KEY });

let current = { call: 'setup', user: null, streamed: false };
const steps = [];
registerTelemetryIntegration({
  onFinish(event) {
    for (const step of event.steps) {
      steps.push({
        kind: 'step',
        ...current,
        model: step.model?.modelId,
        finishReason: step.finishReason,
        usage: step.usage,
        eventId: step.response?.headers?.['x-meterline-event-id'],
        generationId: step.providerMetadata?.gateway?.generationId,
        warnings: step.warnings,
      });
    }
  },
});

// ---- The reference product's first sample, unchanged (after what it assumes). ----
const customer = { id: 'cust-sample', plan: 'plan-pro' };
const userMessage = 'Review this change: the meter now rounds half to even.';
current = { call: 'sample', user: customer.id, streamed: false };
const { text } = await generateText({
  model: 'anthropic/claude-sonnet-4.6', prompt: userMessage,
  providerOptions: { gateway: { user: customer.id, tags: [customer.plan, 'code-review'] } },
});
// ---- End of the sample. ----
if (!text) throw new Error('the sample got no text');

/** One call, generateText or streamText, tagged with its own user. */
async function run(call, { streamed, user, ...request }) {
  current = { call, user, streamed };
  const options = {
    maxRetries: 0,
    ...request,
    providerOptions: {
      ...request.providerOptions,
      gateway: { user, tags: ['suite:ai-gateway'] },
    },
  };
  if (!streamed) return generateText(options);
  let failure = null;
  const result = streamText({ ...options, onError: ({ error }) => { failure = error; } });
  for await (const _ of result.textStream);
  await Promise.all([result.steps, result.totalUsage]);
  if (failure) throw failure;
  return result;
}

for (const [wire, model] of [['openai', 'openai/gpt-4o'], ['anthropic', 'anthropic/claude-sonnet-4-6']]) {
  for (const streamed of [false, true]) {
    await run(`text-${wire}`, {
      model,
      streamed,
      user: `text-${wire}-${streamed ? 'stream' : 'whole'}`,
      system: 'You are terse.',
      prompt: `Describe a gas meter (${streamed ? 'streamed' : 'whole'}).`,
      maxOutputTokens: 300,
    });
  }
}

const readMeter = tool({
  description: 'Read a meter',
  inputSchema: jsonSchema({ type: 'object', properties: { meter_id: { type: 'string' } }, required: ['meter_id'] }),
  execute: async ({ meter_id }) => ({ meter_id, kwh: 42 }),
});
for (const [wire, model, streamed] of [['openai', 'openai/gpt-4o', false], ['anthropic', 'anthropic/claude-haiku-4-5', true]]) {
  const result = await run(`tools-${wire}`, {
    model,
    streamed,
    user: `tools-${wire}`,
    prompt: 'Please call a tool for meter 7.',
    tools: { read_meter: readMeter },
    stopWhen: stepCountIs(2),
  });
  const [first, second] = await result.steps;
  if (first.toolCalls[0]?.toolName !== 'read_meter' || first.toolResults[0]?.output?.kwh !== 42) {
    throw new Error(`${wire}: no tool round trip: ${JSON.stringify(first.content)}`);
  }
  if (!second) throw new Error(`${wire}: the tool result was not sent back`);
}

await run('reasoning-openai', {
  model: 'openai/gpt-5-mini',
  streamed: false,
  user: 'reasoning-openai',
  prompt: 'Think about meters.',
  providerOptions: { openai: { reasoningEffort: 'low' } },
});
await run('reasoning-anthropic', {
  model: 'anthropic/claude-sonnet-4-6',
  streamed: true,
  user: 'reasoning-anthropic',
  prompt: 'Think about meters.',
  providerOptions: { anthropic: { thinking: { type: 'enabled', budgetTokens: 1024 } } },
});

// The simulator caches prompts of 1024 tokens or more, and Anthropic's with cacheControl;
// whether it reports a read or a write depends on the request, so variants are tried until
// each kind came (every attempt is a request, and counted).
const caches = [
  ['openai', 'openai/gpt-4o', 'cacheReadTokens', null],
  ['openai', 'openai/gpt-5.6-luna', 'cacheWriteTokens', null],
  ['anthropic', 'anthropic/claude-sonnet-4-6', 'cacheReadTokens', { cacheControl: { type: 'ephemeral' } }],
  ['anthropic', 'anthropic/claude-sonnet-4-6', 'cacheWriteTokens', { cacheControl: { type: 'ephemeral' } }],
];
for (const [wire, model, wanted, anthropic] of caches) {
  let found = false;
  for (let n = 0; n < 16 && !found; n += 1) {
    const result = await run(`cache-${wire}-${wanted}`, {
      model,
      streamed: n % 2 === 1,
      user: `cache-${wire}-${wanted}`,
      // A system message, not the system option: it carries the cache breakpoint.
      allowSystemInMessages: true,
      messages: [
        { role: 'system', content: `Handbook ${n}. `.repeat(400), ...(anthropic && { providerOptions: { anthropic } }) },
        { role: 'user', content: 'What does the handbook say?' },
      ],
    });
    found = ((await result.totalUsage).inputTokenDetails[wanted] ?? 0) > 0;
  }
  if (!found) throw new Error(`${model}: no ${wanted} in 16 variants`);
}

// Errors come as the SDK's own classes.
for (const [expected, model] of [
  ['GatewayModelNotFoundError', createGateway({ baseURL: `${process.env.METERLINE_URL}/v3/ai`, apiKey: process.env.METERLINE_KEY })('nowhere/gpt-4o')],
  ['GatewayAuthenticationError', createGateway({ baseURL: `${process.env.METERLINE_URL}/v3/ai`, apiKey: 'ml_wrong' })('openai/gpt-4o')],
]) {
  try {
    await generateText({ model, prompt: 'hi', maxRetries: 0 });
    throw new Error(`expected ${expected}`);
  } catch (error) {
    console.log(JSON.stringify({ kind: 'error', expected, name: error.name, statusCode: error.statusCode ?? null }));
  }
}

// ---- The gateway's other endpoints, through the same default provider: getSpendReport
// (GET /v1/report) by every groupBy it offers, getGenerationInfo (GET /v1/generation) for
// each request's id, getCredits (GET /v1/credits) and getAvailableModels
// (GET /v3/ai/config), each answer parsed by the SDK's own schemas. ----
const gateway = globalThis.AI_SDK_DEFAULT_PROVIDER;
const day = (offset) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
const range = { startDate: day(-1), endDate: day(1) };

// The events reach the rollups a moment after the answers: wait until every request is in.
const deadline = Date.now() + 30_000;
for (;;) {
  const { results } = await gateway.getSpendReport({ ...range, groupBy: 'user' });
  if (results.reduce((sum, row) => sum + row.requestCount, 0) >= steps.length) break;
  if (Date.now() > deadline) throw new Error(`the report did not reach ${steps.length} requests`);
  await new Promise((resolve) => setTimeout(resolve, 200));
}
const reports = [];
for (const params of [
  { groupBy: 'day' },
  { groupBy: 'day', datePart: 'hour' },
  { groupBy: 'user' },
  { groupBy: 'model' },
  { groupBy: 'tag' },
  { groupBy: 'provider' },
  { groupBy: 'credential_type' },
]) {
  reports.push({ params, results: (await gateway.getSpendReport({ ...range, ...params })).results });
}
const generations = [];
for (const step of steps) generations.push(await gateway.getGenerationInfo({ id: step.eventId }));

for (const step of steps) console.log(JSON.stringify(step));
console.log(JSON.stringify({
  kind: 'metadata',
  reports,
  generations,
  credits: await gateway.getCredits(),
  models: (await gateway.getAvailableModels()).models,
}));
