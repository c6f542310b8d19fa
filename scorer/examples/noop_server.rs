//! The ceiling for the scorer's throughput: an actix-web endpoint that reads the JSON body and
//! answers a constant, with the scorer's worker count. `bench/scorer_bench.sh` loads both with
//! the same tool and settings.
//!
//! Usage: `noop_server <listen address> <workers>`

use actix_web::{App, HttpResponse, HttpServer, web};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    let workers = args.next().and_then(|w| w.parse().ok()).unwrap_or(2);
    HttpServer::new(|| {
        App::new().route(
            "/v1/score",
            web::post().to(|body: web::Bytes| async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(format!(r#"{{"likelihood":0.0,"bytes":{}}}"#, body.len()))
            }),
        )
    })
    .workers(workers)
    .bind(listen)?
    .run()
    .await
}
