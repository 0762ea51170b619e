/**
 * One turn of the Product Owner: the model is called with the conversation and the tools of the
 * active capability groups, the tools it calls are run, and their answers go back to it, for at
 * most `maxIterations` rounds. A tool call the model gets wrong (an unknown tool, arguments that do
 * not parse) goes back to it as a tool error; it never stops the loop. A tool with side effects is
 * not run: the person is asked to confirm it, and the turn ends there.
 */
import { AppError } from "../lib/app-error.ts";
import type { CapabilityGroup } from "../shared/chat.ts";
import type { Task } from "../tasks/tasks.ts";
import type { ModelCaller, ModelMessage } from "./model.ts";
import { BASE_TOOLS, type BaseToolName, modelTools, parseArguments, type Tool, type ToolContext, toolByName, toolsOf } from "./tools.ts";

export const MAX_ITERATIONS = 6;

export interface TurnDeps {
  call: ModelCaller;
  tools: ToolContext;
  system: string;
  /** The conversation so far, oldest first (the new message is its last turn). */
  history: ModelMessage[];
  /** Stores a turn (the loop's own messages as it makes them). */
  append(message: ModelMessage): void;
  say(text: string): Promise<void>;
  /** Asks the person to confirm a tool call; the turn ends waiting for them. */
  confirm(tool: Tool, args: unknown): Promise<void>;
  /** A tool started a task: tell the person and follow it. */
  started(tool: Tool, args: unknown, task: Task): Promise<void>;
  /** The agent cannot go on by itself: a person must decide. */
  escalate(reason: string, detail: Record<string, unknown>): Promise<void>;
  /** A budget is past 80%. */
  budgetWarning(text: string): Promise<void>;
}

export type TurnOutcome = "answered" | "awaiting" | "escalated";

const RESULT_LIMIT = 3000;
const json = (value: unknown) => {
  const text = JSON.stringify(value);
  return text.length > RESULT_LIMIT ? `${text.slice(0, RESULT_LIMIT)}… [cut]` : text;
};

export async function runTurn(deps: TurnDeps, startGroups: readonly CapabilityGroup[], maxIterations = MAX_ITERATIONS): Promise<{ outcome: TurnOutcome; groups: CapabilityGroup[] }> {
  const groups = new Set(startGroups);
  const messages: ModelMessage[] = [...deps.history];
  const push = (message: ModelMessage) => {
    messages.push(message);
    deps.append(message);
  };
  let warned = false;
  for (let iteration = 0; iteration < maxIterations; iteration++) {
    const offered = modelTools([...groups]);
    const answer = await deps.call("product_owner", { messages: [{ role: "system", content: deps.system }, ...messages], tools: offered });
    if (answer.budgetWarning && !warned) {
      warned = true;
      await deps.budgetWarning(answer.budgetWarning);
    }
    if (answer.toolCalls.length === 0) {
      push({ role: "assistant", content: answer.content });
      if (answer.content.trim()) await deps.say(answer.content.trim());
      return { outcome: "answered", groups: [...groups] };
    }
    push({ role: "assistant", content: answer.content || null, tool_calls: answer.toolCalls.map((call) => ({ id: call.id, type: "function", function: { name: call.name, arguments: call.arguments } })) });
    let finished = false;
    let awaiting = false;
    let onlyResponses = true;
    for (const call of answer.toolCalls) {
      const reply = (content: string) => push({ role: "tool", tool_call_id: call.id, content });
      const base = call.name in BASE_TOOLS ? (call.name as BaseToolName) : undefined;
      if (base !== "respond") onlyResponses = false;
      if (base) {
        const parsed = parseArguments(BASE_TOOLS[base].input, call.arguments);
        if (!parsed.ok) {
          reply(`error: invalid arguments for ${call.name}: ${parsed.error}`);
          continue;
        }
        if (base === "respond") {
          await deps.say((parsed.args as { text: string }).text);
          reply("sent");
        } else if (base === "finish") {
          finished = true;
          reply("ok");
        } else {
          const asked = (parsed.args as { groups: CapabilityGroup[] }).groups;
          for (const group of asked) groups.add(group);
          reply(`loaded: ${toolsOf(asked).map((t) => t.name).join(", ") || "no tools"}`);
        }
        continue;
      }
      const tool = toolByName(call.name);
      if (!tool || !groups.has(tool.group)) {
        reply(`error: there is no tool named ${call.name} in the loaded groups (${[...groups].join(", ")}); call request_capabilities to load another group`);
        continue;
      }
      const parsed = parseArguments(tool.input, call.arguments);
      if (!parsed.ok) {
        reply(`error: invalid arguments for ${call.name}: ${parsed.error}`);
        continue;
      }
      if (awaiting) {
        reply("not run: one confirmation at a time; ask again after the person has answered the first");
        continue;
      }
      if (tool.confirm) {
        await deps.confirm(tool, parsed.args);
        reply("the person has been asked to confirm; it runs if they do (you will be told)");
        awaiting = true;
        continue;
      }
      try {
        const outcome = await tool.run(deps.tools, parsed.args as never);
        reply(json(outcome.result));
        if (outcome.task) await deps.started(tool, parsed.args, outcome.task);
        for (const task of outcome.also ?? []) await deps.started(tool, parsed.args, task);
      } catch (error) {
        if (error instanceof AppError && error.code !== "internal_error") {
          // Refusals and conflicts the model can explain or work around.
          if (error.code === "budget_exceeded") throw error;
          reply(`error: ${error.code}: ${error.message}`);
          continue;
        }
        reply("error: the tool failed unexpectedly");
        await deps.escalate(`${call.name} failed with an error the agent cannot recover from`, { tool: call.name, error: error instanceof Error ? error.message : String(error) });
        return { outcome: "escalated", groups: [...groups] };
      }
    }
    if (awaiting) return { outcome: "awaiting", groups: [...groups] };
    // Saying something and calling nothing else ends the turn: the person has the next word.
    if (finished || onlyResponses) return { outcome: "answered", groups: [...groups] };
  }
  await deps.escalate(`no answer after ${maxIterations} rounds of tool calls`, { iterations: maxIterations });
  return { outcome: "escalated", groups: [...groups] };
}
