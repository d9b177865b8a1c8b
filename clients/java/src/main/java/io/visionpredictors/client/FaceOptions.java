package io.visionpredictors.client;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The parameters of face enhancement; those left unset take the server's defaults (JPEG at quality 95,
 * requireFace, upscale). {@code FaceOptions.builder().outputFormat("png").build()}.
 */
public final class FaceOptions {
    /** The server's defaults. */
    public static final FaceOptions DEFAULTS = builder().build();

    private final Map<String, Object> parameters;

    private FaceOptions(Map<String, Object> parameters) {
        this.parameters = Map.copyOf(parameters);
    }

    public static Builder builder() {
        return new Builder();
    }

    Map<String, Object> parameters() {
        return parameters;
    }

    /** Builds {@link FaceOptions}. */
    public static final class Builder {
        private final Map<String, Object> parameters = new LinkedHashMap<>();

        private Builder() {
        }

        /** {@code jpeg} or {@code png}. */
        public Builder outputFormat(String format) {
            parameters.put("output_format", format);
            return this;
        }

        public Builder jpegQuality(int quality) {
            parameters.put("jpeg_quality", quality);
            return this;
        }

        /** Whether an image without a face is refused (422 {@code FACE_NOT_FOUND}). */
        public Builder requireFace(boolean requireFace) {
            parameters.put("require_face", requireFace);
            return this;
        }

        /** Whether the image is upscaled (twice its size). */
        public Builder upscale(boolean upscale) {
            parameters.put("upscale", upscale);
            return this;
        }

        public FaceOptions build() {
            return new FaceOptions(parameters);
        }
    }
}
