//! Runs the in-memory S3 model as an HTTP server on 127.0.0.1, to point S3 tools at it by hand.
//!
//! `cargo run -p goofys-sim --features server --example model_s3_server -- PORT BUCKET ACCESS_KEY SECRET_KEY`
//! serves until interrupted. The model keeps AWS's limits (5 MiB minimum part size).

use std::sync::{Arc, Mutex};

use goofys_sim::s3_model::S3Model;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, bucket, access_key, secret_key] = args.as_slice() else {
        anyhow::bail!("usage: model_s3_server PORT BUCKET ACCESS_KEY SECRET_KEY");
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?)).await?;
    println!("serving bucket {bucket} on http://{}", listener.local_addr()?);
    let model = Arc::new(Mutex::new(S3Model::new()));
    goofys_sim::server::serve(listener, bucket, access_key, secret_key, model).await
}
