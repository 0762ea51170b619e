import { expect, test } from "vitest";
import { botForTest } from "./helpers.ts";

test("/start says hello and remembers the chat", async () => {
  const { store, say, replies } = botForTest();
  await say("/start");
  expect(replies()).toEqual(["Hello! Send /help to see what I can do."]);
  expect(store.chatIds()).toEqual([42]);
});
