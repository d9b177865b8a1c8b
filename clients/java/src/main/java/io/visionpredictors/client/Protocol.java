package io.visionpredictors.client;

/** How requests travel: the v2 binary tensor extension (default) or v2 JSON (images base64-encoded). */
public enum Protocol {
    /** A JSON header and the raw image bytes: nothing base64-encoded. */
    BINARY,
    /** v2 JSON, images as base64 strings: for proxies that only pass JSON. */
    JSON
}
