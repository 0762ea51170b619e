/** The VectorIndex over the local VectorStore Durable Object (VECTOR_INDEX = "local"). */
import type { VectorIndex } from "./vector-index.ts";

/** Records per call: one RPC message stays small (500 × 512 floats is about 2 MB serialised). */
const BATCH = 500;

/** The store of this deployment's local index ("default"). */
export function getVectorStore(env: Pick<Env, "VECTOR_STORE">, name = "default") {
  return env.VECTOR_STORE.get(env.VECTOR_STORE.idFromName(name));
}

/** `name` picks the store: one per deployment ("default"), or one a test keeps to itself. */
export function localVectorIndex(namespace: Env["VECTOR_STORE"], name = "default"): VectorIndex {
  const store = getVectorStore({ VECTOR_STORE: namespace }, name);
  return {
    name: "local",
    async upsert(records) {
      for (let i = 0; i < records.length; i += BATCH) await store.upsert(records.slice(i, i + BATCH));
    },
    async delete(ids) {
      for (let i = 0; i < ids.length; i += BATCH) await store.delete(ids.slice(i, i + BATCH));
    },
    async query(vector, options) {
      return store.query([...vector], options);
    },
    async count() {
      return (await store.stats()).count;
    },
  };
}
