import { expect, test } from "vitest";
import { botForTest } from "./helpers.ts";

test("/start says hello and remembers the chat", async () => {
  const { store, say, replies } = botForTest();
  await say("/start");
  expect(replies()).toEqual(["Hello! Send /help to see what I can do."]);
  expect(store.chatIds()).toEqual([42]);
});

test("subscriptions are kept per chat and topic", () => {
  const { store } = botForTest();
  store.subscribe(42, "lisbon");
  store.subscribe(42, "lisbon");
  store.subscribe(7, "berlin");
  expect(store.topicsOf(42)).toEqual(["lisbon"]);
  expect(store.unsubscribe(7, "berlin")).toBe(true);
  expect(store.subscriptions()).toEqual([{ chatId: 42, topic: "lisbon" }]);
});
