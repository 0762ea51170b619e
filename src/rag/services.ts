/** The knowledge index's parts as this deployment configures them, for one request's database handle. */
import type { Db } from "../db/client.ts";
import { configuredEmbedder } from "./embeddings.ts";
import type { SearchServices } from "./search.ts";
import { configuredVectorIndex } from "./vector-index.ts";

export function ragServices(db: Db, env: Env): SearchServices {
  return { db, index: configuredVectorIndex(env), embedder: configuredEmbedder(db, env) };
}
