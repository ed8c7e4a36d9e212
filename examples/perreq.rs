//! Runs N requests through one named stack, for counting instructions per
//! request under callgrind (see `../shared/tools/instructions-per-request.sh`):
//!
//! ```text
//! cargo build --release --example perreq
//! instructions-per-request.sh target/release/examples/perreq armor
//! ```

#[path = "../benches/support/timeout_stacks.rs"]
#[allow(dead_code)]
mod stacks;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(stack), Some(n)) = (args.next(), args.next().and_then(|n| n.parse().ok())) else {
        eprintln!(
            "usage: perreq STACK N   (stacks: {})",
            stacks::STACKS.join(", ")
        );
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let _context = runtime.enter();
    if !stacks::run(&stack, n) {
        eprintln!(
            "no stack named {stack:?} (stacks: {})",
            stacks::STACKS.join(", ")
        );
        std::process::exit(2);
    }
}
