/**
 * vision-predictors-client: call the vision-predictors model server in three lines.
 *
 * ```ts
 * import { Client } from "vision-predictors-client";
 * const client = new Client("http://localhost:8080");
 * console.log((await client.recognize("cat.jpg")).labels);
 * ```
 */

export {
  Client,
  RetryPolicy,
  parseRetryAfter,
  type CallOptions,
  type ClientOptions,
  type EntailOptions,
  type FaceOptions,
  type InferOptions,
  type InputElement,
  type Inputs,
  type LabelsOptions,
  type SubmitOptions,
  type WaitOptions,
} from "./client.js";
export * from "./errors.js";
export { imageFile, type ImageInput } from "./images.js";
export { type Job, type JobStatus, type Polling } from "./jobs.js";
export { EnhancedFace, entailmentsFrom, facesFrom, labelsFrom, type Entailment, type Labels } from "./results.js";
export { InferResult, Tensor, type Protocol, type TensorValue } from "./wire.js";
