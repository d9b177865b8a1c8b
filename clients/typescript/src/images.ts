/** What may be sent as an image: a path, bytes, a Blob, or a stream of bytes. */

import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

/**
 * One image: a file path (a string or a `file:` URL), its encoded bytes (`Uint8Array`, `Buffer`,
 * `ArrayBuffer`), a `Blob` (or `File`), or a stream of its bytes (a Node `Readable` or a web `ReadableStream`).
 * The server decodes and validates it (JPEG, PNG, WebP, BMP).
 */
export type ImageInput = string | URL | Uint8Array | ArrayBuffer | Blob | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array | string>;

/** The encoded bytes of one image (a stream is read to its end). */
export async function imageBytes(image: ImageInput): Promise<Uint8Array> {
  if (typeof image === "string" || image instanceof URL) {
    return new Uint8Array(await readFile(image));
  }
  if (image instanceof Uint8Array) {
    return image;
  }
  if (image instanceof ArrayBuffer) {
    return new Uint8Array(image);
  }
  if (typeof Blob !== "undefined" && image instanceof Blob) {
    return new Uint8Array(await image.arrayBuffer());
  }
  if (typeof ReadableStream !== "undefined" && image instanceof ReadableStream) {
    const chunks: Uint8Array[] = [];
    const reader = (image as ReadableStream<Uint8Array>).getReader();
    for (let read = await reader.read(); !read.done; read = await reader.read()) {
      chunks.push(read.value);
    }
    return Buffer.concat(chunks);
  }
  if (image !== null && typeof image === "object" && Symbol.asyncIterator in image) {
    const chunks: Uint8Array[] = [];
    for await (const chunk of image as AsyncIterable<Uint8Array | string>) {
      if (typeof chunk === "string") {
        throw new TypeError("an image stream must yield bytes: do not set an encoding on it");
      }
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }
  throw new TypeError(`cannot send ${Object.prototype.toString.call(image)} as an image: ` +
    "give a path, bytes, a Blob or a stream of bytes");
}

/** The encoded images of a call, and whether it is a batch: an array of images is one batched request. */
export async function encodeImages(image: ImageInput | readonly ImageInput[]): Promise<[Uint8Array[], boolean]> {
  if (Array.isArray(image)) {
    return [await Promise.all((image as readonly ImageInput[]).map(imageBytes)), true];
  }
  return [[await imageBytes(image as ImageInput)], false];
}

/** A file's bytes as an input element of `infer` or `submit`, where a plain string is text. */
export function imageFile(path: string): URL {
  return pathToFileURL(resolve(path));
}
