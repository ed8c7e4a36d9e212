//! Names for sets of features, so `#[cfg]`s say what they mean once:
//!
//! * `armor_compression`: any coding is on, so the compression layers exist;
//! * `armor_keyed`: a layer with keys is on (rate limit, breaker, retry);
//! * `armor_layer`: any layer is on;
//! * `armor_presets`: every layer the presets hold is on.

fn main() {
    let on = |feature: &str| {
        let variable = format!("CARGO_FEATURE_{}", feature.to_uppercase().replace('-', "_"));
        std::env::var_os(variable).is_some()
    };
    let compression = [
        "compression-gzip",
        "compression-deflate",
        "compression-br",
        "compression-zstd",
    ]
    .into_iter()
    .any(on);
    let keyed = ["rate-limit", "circuit-breaker", "retry"]
        .into_iter()
        .any(on);
    let layer = compression || keyed || on("timeout") || on("metrics") || on("health");
    let presets = compression
        && [
            "cache",
            "metrics",
            "health",
            "timeout",
            "rate-limit",
            "circuit-breaker",
            "retry",
        ]
        .into_iter()
        .all(on);
    for (name, set) in [
        ("armor_compression", compression),
        ("armor_keyed", keyed),
        ("armor_layer", layer),
        ("armor_presets", presets),
    ] {
        println!("cargo::rustc-check-cfg=cfg({name})");
        if set {
            println!("cargo::rustc-cfg={name}");
        }
    }
}
