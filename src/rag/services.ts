/** The knowledge index's parts as this deployment configures them, for one request's database handle. */
import type { Db } from "../db/client.ts";
import { AppError } from "../lib/app-error.ts";
import { configuredEmbedder } from "./embeddings.ts";
import { localVectorIndex } from "./local-vector-index.ts";
import type { SearchServices } from "./search.ts";
import type { VectorIndex } from "./vector-index.ts";
import { vectorizeIndex } from "./vectorize-index.ts";

export function ragServices(db: Db, env: Env): SearchServices {
  return { db, index: configuredVectorIndex(env), embedder: configuredEmbedder(db, env) };
}

/** The index VECTOR_INDEX names: `local` (the default) or `vectorize`. */
export function configuredVectorIndex(env: Pick<Env, "VECTOR_INDEX" | "VECTOR_STORE" | "VECTORIZE">): VectorIndex {
  const choice = env.VECTOR_INDEX || "local";
  if (choice === "local") return localVectorIndex(env.VECTOR_STORE);
  if (choice === "vectorize") return vectorizeIndex(env.VECTORIZE);
  throw new AppError("conflict", `VECTOR_INDEX is "${choice}": it is "local" or "vectorize"`);
}
