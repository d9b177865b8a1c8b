package io.visionpredictors.client;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;

/** A face-enhanced image and how far to trust it. */
public record EnhancedFace(byte[] imageBytes, int faces, double qualityScore, boolean needsReview, int width, int height) {
    private static final byte[] PNG = {(byte) 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    private static final byte[] JPEG = {(byte) 0xff, (byte) 0xd8, (byte) 0xff};

    /** {@code jpeg}, {@code png}, {@code webp} or {@code bmp}, read from the image's first bytes ({@code unknown} else). */
    public String format() {
        if (startsWith(PNG)) {
            return "png";
        }
        if (startsWith(JPEG)) {
            return "jpeg";
        }
        if (startsWith("BM".getBytes(StandardCharsets.US_ASCII))) {
            return "bmp";
        }
        if (startsWith("RIFF".getBytes(StandardCharsets.US_ASCII)) && imageBytes.length >= 12
                && "WEBP".equals(new String(imageBytes, 8, 4, StandardCharsets.US_ASCII))) {
            return "webp";
        }
        return "unknown";
    }

    private boolean startsWith(byte[] magic) {
        return imageBytes.length >= magic.length && Arrays.equals(imageBytes, 0, magic.length, magic, 0, magic.length);
    }

    /** Writes the image to {@code path}; returns it. */
    public Path save(Path path) throws IOException {
        return Files.write(path, imageBytes);
    }

    /** The enhanced faces of each item of a face-enhancement answer. */
    public static List<EnhancedFace> from(InferResult result) {
        List<Object> images = result.output("image").data();
        List<Object> faces = result.output("faces").data();
        List<Object> quality = result.output("quality_score").data();
        List<Object> review = result.output("needs_review").data();
        List<Object> widths = result.output("width").data();
        List<Object> heights = result.output("height").data();
        List<EnhancedFace> items = new ArrayList<>(images.size());
        for (int i = 0; i < images.size(); i++) {
            // over JSON the server sends binary content as base64 text
            byte[] image = images.get(i) instanceof byte[] bytes ? bytes : Base64.getDecoder().decode(images.get(i).toString());
            items.add(new EnhancedFace(image, ((Number) faces.get(i)).intValue(), ((Number) quality.get(i)).doubleValue(),
                    Boolean.TRUE.equals(review.get(i)), ((Number) widths.get(i)).intValue(), ((Number) heights.get(i)).intValue()));
        }
        return items;
    }
}
