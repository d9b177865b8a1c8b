package io.visionpredictors.client;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;

/**
 * One image to send: a file, its encoded bytes, a {@link ByteBuffer} or an {@link InputStream}. The server
 * decodes and validates it (JPEG, PNG, WebP, BMP). A file or stream is read when the call is made; a file
 * that cannot be read is an {@link UncheckedIOException} (nothing was sent).
 */
public final class Image {
    private final Path path;
    private final byte[] bytes;
    private final InputStream stream;

    private Image(Path path, byte[] bytes, InputStream stream) {
        this.path = path;
        this.bytes = bytes;
        this.stream = stream;
    }

    /** The file at {@code path}. */
    public static Image of(Path path) {
        return new Image(Objects.requireNonNull(path, "path"), null, null);
    }

    /** The file at {@code path}. */
    public static Image file(String path) {
        return of(Path.of(path));
    }

    /** Encoded image bytes (not copied: do not change them while the call runs). */
    public static Image of(byte[] bytes) {
        return new Image(null, Objects.requireNonNull(bytes, "bytes"), null);
    }

    /** The remaining bytes of {@code buffer} (copied; the buffer's position is left as it is). */
    public static Image of(ByteBuffer buffer) {
        ByteBuffer view = buffer.duplicate();
        byte[] copy = new byte[view.remaining()];
        view.get(copy);
        return of(copy);
    }

    /** The bytes of {@code stream}, read to its end (and closed) when the call is made. */
    public static Image of(InputStream stream) {
        return new Image(null, null, Objects.requireNonNull(stream, "stream"));
    }

    /** The encoded bytes to send. */
    byte[] bytes() {
        try {
            if (bytes != null) {
                return bytes;
            }
            if (path != null) {
                return Files.readAllBytes(path);
            }
            try (InputStream in = stream) {
                return in.readAllBytes();
            }
        } catch (IOException error) {
            throw new UncheckedIOException("cannot read the image " + (path != null ? path : "stream"), error);
        }
    }
}
