"""Wire formats <-> typed Python objects. Model code never sees JSON, base64 or tensors on the wire."""
