/** Typed results of the models, read from their v2 outputs (README "Contracts per model"). */

import { writeFile } from "node:fs/promises";

import { InferResult, type TensorValue } from "./wire.js";

/** The entailment classes in the order of the `scores` vector, for servers that predate `element_names`. */
export const ENTAILMENT_CLASSES = ["entailment", "contradiction", "neutral"] as const;

const decoder = new TextDecoder();

/** Top-k labels, best first, and their softmax scores. */
export interface Labels {
  labels: string[];
  scores: number[];
}

/** Whether the image (with the optional premise) entails the hypothesis; scores by class name. */
export interface Entailment {
  label: string;
  scores: Record<string, number>;
}

/** A face-enhanced image and how far to trust it. */
export class EnhancedFace {
  constructor(
    readonly imageBytes: Uint8Array,
    readonly faces: number,
    readonly qualityScore: number,
    readonly needsReview: boolean,
    readonly width: number,
    readonly height: number,
  ) {}

  /** `jpeg`, `png`, `webp` or `bmp`, read from the image's first bytes (`unknown` otherwise). */
  get format(): string {
    const head = Buffer.from(this.imageBytes.subarray(0, 12));
    if (head.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return "png";
    if (head.subarray(0, 3).equals(Buffer.from([0xff, 0xd8, 0xff]))) return "jpeg";
    if (head.subarray(0, 2).toString("latin1") === "BM") return "bmp";
    if (head.subarray(0, 4).toString("latin1") === "RIFF" && head.subarray(8, 12).toString("latin1") === "WEBP") {
      return "webp";
    }
    return "unknown";
  }

  /** Write the image to `path`; returns the path. */
  async save(path: string): Promise<string> {
    await writeFile(path, this.imageBytes);
    return path;
  }
}

function text(value: TensorValue): string {
  return value instanceof Uint8Array ? decoder.decode(value) : String(value);
}

function binary(value: TensorValue): Uint8Array {
  // over JSON the server sends binary content as base64 text
  return value instanceof Uint8Array ? value : new Uint8Array(Buffer.from(String(value), "base64"));
}

/** The `Labels` of each item of a classifier's answer. */
export function labelsFrom(result: InferResult): Labels[] {
  const scores = result.output("scores").rows();
  return result.output("labels").rows().map((row, i) => ({
    labels: row.map(text),
    scores: (scores[i] ?? []).map(Number),
  }));
}

/** The `EnhancedFace` of each item of a face-enhancement answer. */
export function facesFrom(result: InferResult): EnhancedFace[] {
  const [images, faces, quality, review, width, height] = ["image", "faces", "quality_score", "needs_review",
    "width", "height"].map((name) => result.output(name).data);
  return images!.map((image, i) => new EnhancedFace(binary(image), Number(faces![i]), Number(quality![i]),
    Boolean(review![i]), Number(width![i]), Number(height![i])));
}

/** The `Entailment` of each item of a visual-entailment answer. */
export function entailmentsFrom(result: InferResult): Entailment[] {
  const scores = result.output("scores");
  const named = scores.parameters["element_names"];
  const names = typeof named === "string" && named ? named.split(",") : [...ENTAILMENT_CLASSES];
  const rows = scores.rows();
  return result.output("label").data.map((label, i) => ({
    label: text(label),
    scores: Object.fromEntries(names.map((name, j) => [name, Number(rows[i]![j])])),
  }));
}
