// Two turns of a conversation through the Vercel AI SDK's OpenAI provider (Responses API), as an app
// would write them: turn 1 runs a tool round (the model calls `lookup`, the SDK runs it, the model
// answers), turn 2 sends turn 1's messages back with a new question. The SDK refers to the stored
// answer of turn 1 by `item_reference` (store is true by default). Every request body the SDK sends
// is recorded by a fetch spy and printed with the answers, as JSON, for tests/test_vercel_ai_sdk.py.
//
// Run from the folder where `ai` and `@ai-sdk/openai` are installed (stdin, --input-type=module):
// AIGW_BASE_URL, AIGW_TOKEN and AIGW_MODEL say where to go. AIGW_REASONING=1 asks for reasoning
// summaries (and has the SDK treat the model as a reasoning model): its reasoning parts are referred
// to by id too, from the tool round on.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, jsonSchema, stepCountIs, tool } from "ai";

const sent = [];
const spy = async (url, init) => {
  sent.push({ url: String(url), body: init?.body ? JSON.parse(init.body) : null });
  return fetch(url, init);
};
const provider = createOpenAI({ baseURL: process.env.AIGW_BASE_URL, apiKey: process.env.AIGW_TOKEN, fetch: spy });
const model = provider.responses(process.env.AIGW_MODEL);
const lookup = tool({
  description: "Look something up.",
  inputSchema: jsonSchema({ type: "object", properties: { query: { type: "string" } }, required: ["query"] }),
  execute: async ({ query }) => `the answer to ${query} is kumquat`,
});

const providerOptions = process.env.AIGW_REASONING === "1" ? { openai: { forceReasoning: true, reasoningSummary: "auto" } } : {};
const question = { role: "user", content: "what fruit" };
const first = await generateText({ model, tools: { lookup }, messages: [question], stopWhen: stepCountIs(3), providerOptions });
const messages = [question, ...first.response.messages, { role: "user", content: "say it again" }];
const second = await generateText({ model, tools: { lookup }, toolChoice: "none", messages, providerOptions });

console.log(JSON.stringify({ first: first.text, second: second.text, firstSteps: first.steps.length, sent }));
