// The Vercel AI SDK as a client of the Meterline gateway: Chat Completions through its
// OpenAI-compatible provider, Responses through its OpenAI provider, Messages through its
// Anthropic provider, each streamed and not. Prints one JSON line per call: what the SDK
// reported (usage, provider metadata) and the gateway's event id.
//
// Usage: METERLINE_URL=http://127.0.0.1:8080 METERLINE_KEY=ml_... node client.mjs
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, streamText } from "ai";

const base = process.env.METERLINE_URL;
const apiKey = process.env.METERLINE_KEY;
const headers = { "ai-reporting-tags": "suite:ai-sdk", "ai-reporting-user": "ai-sdk" };

const compatible = createOpenAICompatible({
  name: "meterline",
  baseURL: `${base}/v1`,
  apiKey,
  includeUsage: true,
});
const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey });
const anthropic = createAnthropic({ baseURL: `${base}/v1`, apiKey });

const calls = [
  ["chat_completions", "openai", "gpt-4o", compatible.chatModel("openai/gpt-4o")],
  ["responses", "openai", "gpt-5-mini", openai.responses("openai/gpt-5-mini")],
  ["messages", "anthropic", "claude-sonnet-4-6", anthropic("anthropic/claude-sonnet-4-6")],
];

for (const [surface, provider, model, languageModel] of calls) {
  for (const streamed of [false, true]) {
    const request = {
      model: languageModel,
      prompt: `The AI SDK asks ${model} about meters (${streamed ? "streamed" : "whole"}).`,
      maxOutputTokens: 512,
      headers,
      maxRetries: 0,
    };
    let usage, providerMetadata, response;
    if (streamed) {
      const result = streamText(request);
      let text = "";
      for await (const piece of result.textStream) text += piece;
      [usage, providerMetadata, response] = await Promise.all([
        result.usage,
        result.providerMetadata,
        result.response,
      ]);
    } else {
      ({ usage, providerMetadata, response } = await generateText(request));
    }
    const eventId = response.headers?.["x-meterline-event-id"];
    console.log(
      JSON.stringify({ surface, provider, model, streamed, eventId, usage, providerMetadata }),
    );
  }
}
