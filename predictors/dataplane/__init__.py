"""The data plane every transport stands on (REST and gRPC in `server`, the jobs' worker in `jobs`): model
lookup and the per-protocol request decoding and answer encoding (`dataplane`), the `kserve.Model` adapter
per model (`kserve_model`: codec -> `ModelRuntime.infer` -> codec), images by URL (`image_urls`), the
request's context (`context`) and the one mapping of any error to the error the caller sees (`errors`)."""
