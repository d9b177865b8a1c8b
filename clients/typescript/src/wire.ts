/**
 * The Open Inference Protocol (KServe v2) over REST: JSON, and JSON plus the binary tensor extension.
 *
 * Every input of the server's models is a 1-D `BYTES` tensor of shape `[N]`. Over the binary extension the
 * request body is a JSON header followed by each tensor's raw bytes (each element as a 4-byte little-endian
 * length and its bytes), the header's length in `Inference-Header-Content-Length`; nothing is base64-encoded.
 * Over JSON, binary elements are base64 strings and text elements plain strings. Outputs come back the same
 * way (`binary_data_output`), each with its datatype and shape.
 */

import { UnexpectedResponseError } from "./errors.js";

export type Protocol = "binary" | "json";
export const HEADER_LENGTH = "Inference-Header-Content-Length";

/** One element of an input tensor: a string is text, bytes are binary content (an encoded image). */
export type Element = string | Uint8Array;
/** A BYTES output element is bytes over the binary extension, the server's string over JSON. */
export type TensorValue = number | boolean | string | bigint | Uint8Array;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One output tensor: `data` is flat, in row-major order. */
export class Tensor {
  constructor(
    readonly name: string,
    readonly datatype: string,
    readonly shape: number[],
    readonly data: TensorValue[],
    readonly parameters: Record<string, unknown> = {},
  ) {}

  /** The elements grouped by the first (batch) dimension. */
  rows(): TensorValue[][] {
    const count = this.shape.length > 0 ? this.shape[0]! : 1;
    const width = count > 0 ? this.data.length / count : 0;
    return Array.from({ length: count }, (_, i) => this.data.slice(i * width, (i + 1) * width));
  }

  /** BYTES elements as text (UTF-8). */
  strings(): string[] {
    return this.data.map((value) => (value instanceof Uint8Array ? decoder.decode(value) : String(value)));
  }
}

/** The answer of a generic `infer` call: output tensors by name, in the server's order. */
export class InferResult {
  constructor(readonly modelName: string, readonly outputs: Map<string, Tensor>, readonly requestId: string | null) {}

  /** The output tensor `name` (an `UnexpectedResponseError` when the model has no such output). */
  output(name: string): Tensor {
    const tensor = this.outputs.get(name);
    if (tensor === undefined) {
      throw new UnexpectedResponseError(
        `model '${this.modelName}' answered without output '${name}' (outputs: ${[...this.outputs.keys()].join(", ")}); ` +
          "is it the right kind of model for this method?",
        { status: 200, requestId: this.requestId },
      );
    }
    return tensor;
  }
}

export interface EncodedRequest {
  body: Uint8Array;
  headers: Record<string, string>;
}

export function encodeRequest(
  inputs: ReadonlyMap<string, Element[]>,
  parameters: Record<string, unknown>,
  protocol: Protocol,
): EncodedRequest {
  const tensors: Record<string, unknown>[] = [];
  if (protocol === "json") {
    for (const [name, values] of inputs) {
      const data = values.map((v) => (typeof v === "string" ? v : Buffer.from(v).toString("base64")));
      tensors.push({ name, datatype: "BYTES", shape: [values.length], data });
    }
    const document = Object.keys(parameters).length > 0 ? { inputs: tensors, parameters } : { inputs: tensors };
    return { body: encoder.encode(JSON.stringify(document)), headers: { "Content-Type": "application/json" } };
  }
  const chunks: Uint8Array[] = [];
  for (const [name, values] of inputs) {
    const raw = Buffer.concat(values.map(bytesElement));
    tensors.push({ name, datatype: "BYTES", shape: [values.length], parameters: { binary_data_size: raw.length } });
    chunks.push(raw);
  }
  const header = encoder.encode(JSON.stringify({ inputs: tensors, parameters: { ...parameters, binary_data_output: true } }));
  return {
    body: Buffer.concat([header, ...chunks]),
    headers: { "Content-Type": "application/octet-stream", [HEADER_LENGTH]: String(header.length) },
  };
}

function bytesElement(value: Element): Uint8Array {
  const data = typeof value === "string" ? encoder.encode(value) : value;
  const length = Buffer.alloc(4);
  length.writeUInt32LE(data.length);
  return Buffer.concat([length, data]);
}

/** Parse a v2 answer: JSON, or a JSON header and binary outputs. */
export function decodeResponse(body: Uint8Array, headerLength: string | null, requestId: string | null): InferResult {
  let document: unknown;
  let jsonLength: number;
  try {
    jsonLength = headerLength === null ? body.length : Number.parseInt(headerLength, 10);
    if (!Number.isInteger(jsonLength) || jsonLength < 0 || jsonLength > body.length) {
      throw new Error(`bad ${HEADER_LENGTH}: ${headerLength}`);
    }
    document = JSON.parse(decoder.decode(body.subarray(0, jsonLength)));
  } catch (error) {
    throw new UnexpectedResponseError(`the server's v2 answer could not be read: ${String(error)}`,
      { status: 200, requestId, cause: error });
  }
  return decodeDocument(document, body, jsonLength, requestId);
}

interface OutputDocument {
  name: string;
  datatype: string;
  shape: number[];
  data?: unknown;
  parameters?: Record<string, unknown>;
}

/** A v2 answer already parsed from JSON; binary outputs, if any, are in `body` from `offset` on. */
export function decodeDocument(document: unknown, body: Uint8Array, offset: number, requestId: string | null): InferResult {
  try {
    const answer = document as { model_name?: unknown; outputs: OutputDocument[] };
    if (!Array.isArray(answer.outputs)) {
      throw new Error("no outputs");
    }
    const tensors = new Map<string, Tensor>();
    for (const output of answer.outputs) {
      const parameters = { ...(output.parameters ?? {}) };
      const shape = output.shape.map(Number);
      const size = parameters["binary_data_size"];
      delete parameters["binary_data_size"];
      let data: TensorValue[];
      if (size !== undefined) {
        data = decodeBinary(body.subarray(offset, offset + Number(size)), output.datatype, count(shape));
        offset += Number(size);
      } else {
        data = flatten(output.data);
      }
      tensors.set(output.name, new Tensor(output.name, String(output.datatype), shape, data, parameters));
    }
    return new InferResult(String(answer.model_name ?? ""), tensors, requestId);
  } catch (error) {
    if (error instanceof UnexpectedResponseError) {
      throw error;
    }
    throw new UnexpectedResponseError(`the server's v2 answer could not be read: ${String(error)}`,
      { status: 200, requestId, cause: error });
  }
}

function count(shape: number[]): number {
  return shape.reduce((product, dimension) => product * dimension, 1);
}

/** Fixed-size datatypes: reader and size in bytes (little-endian on the wire). */
const FIXED: Record<string, [(view: DataView, at: number) => TensorValue, number]> = {
  BOOL: [(v, at) => v.getUint8(at) !== 0, 1],
  UINT8: [(v, at) => v.getUint8(at), 1],
  UINT16: [(v, at) => v.getUint16(at, true), 2],
  UINT32: [(v, at) => v.getUint32(at, true), 4],
  UINT64: [(v, at) => v.getBigUint64(at, true), 8],
  INT8: [(v, at) => v.getInt8(at), 1],
  INT16: [(v, at) => v.getInt16(at, true), 2],
  INT32: [(v, at) => v.getInt32(at, true), 4],
  INT64: [(v, at) => v.getBigInt64(at, true), 8],
  FP16: [(v, at) => halfToNumber(v.getUint16(at, true)), 2],
  FP32: [(v, at) => v.getFloat32(at, true), 4],
  FP64: [(v, at) => v.getFloat64(at, true), 8],
};

function decodeBinary(raw: Uint8Array, datatype: string, expected: number): TensorValue[] {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const values: TensorValue[] = [];
  if (datatype === "BYTES") {
    let at = 0;
    while (at < raw.length) {
      const length = view.getUint32(at, true);
      if (at + 4 + length > raw.length) {
        throw new Error("a BYTES element runs past its tensor");
      }
      values.push(raw.slice(at + 4, at + 4 + length));
      at += 4 + length;
    }
  } else {
    const fixed = FIXED[datatype];
    if (fixed === undefined) {
      throw new Error(`unknown datatype ${datatype}`);
    }
    const [read, size] = fixed;
    for (let at = 0; at + size <= raw.length; at += size) {
      values.push(read(view, at));
    }
  }
  if (values.length !== expected) {
    throw new Error(`${datatype} tensor holds ${values.length} elements, its shape says ${expected}`);
  }
  return values;
}

function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) {
    return sign * 2 ** -14 * (fraction / 1024);
  }
  if (exponent === 0x1f) {
    return fraction ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  }
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

function flatten(data: unknown): TensorValue[] {
  if (!Array.isArray(data)) {
    return [data as TensorValue];
  }
  return data.flatMap((value) => (Array.isArray(value) ? flatten(value) : [value as TensorValue]));
}
