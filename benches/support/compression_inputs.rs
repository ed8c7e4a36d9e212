//! The bodies the compression benches compress: the same bytes in this crate's
//! bench and in the tower-http default-build package beside it.
#![allow(dead_code)]

/// A deterministic word stream (a small LCG over a fixed vocabulary), so the
/// text is varied like real content and identical in every build.
fn words(seed: u64) -> impl Iterator<Item = &'static str> {
    const WORDS: [&str; 32] = [
        "order",
        "customer",
        "shipping",
        "address",
        "street",
        "city",
        "status",
        "pending",
        "delivered",
        "invoice",
        "amount",
        "currency",
        "euro",
        "dollar",
        "warehouse",
        "berlin",
        "lisbon",
        "tokyo",
        "product",
        "widget",
        "gadget",
        "quantity",
        "discount",
        "total",
        "created",
        "updated",
        "note",
        "gift",
        "express",
        "standard",
        "returned",
        "priority",
    ];
    let mut state = seed;
    std::iter::repeat_with(move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        WORDS[(state >> 59) as usize]
    })
}

/// About 64 KiB of API-style JSON: an array of orders.
pub fn json_64k() -> Vec<u8> {
    let mut words = words(7);
    let mut out = String::from("[");
    let mut id = 0u64;
    while out.len() < 64 * 1024 - 200 {
        id += 1;
        out.push_str(&format!(
            "{{\"id\":{id},\"customer\":\"{} {}\",\"status\":\"{}\",\"amount\":{}.{:02},\"items\":[\"{}\",\"{}\"],\"note\":\"{} {} {}\"}},",
            words.next().unwrap(), words.next().unwrap(), words.next().unwrap(),
            id * 37 % 1000, id * 11 % 100, words.next().unwrap(), words.next().unwrap(),
            words.next().unwrap(), words.next().unwrap(), words.next().unwrap(),
        ));
    }
    out.pop();
    out.push(']');
    out.into_bytes()
}

/// About 1 MiB of HTML: a page of tables and paragraphs.
pub fn html_1m() -> Vec<u8> {
    let mut words = words(11);
    let mut out = String::from("<!doctype html><html><head><title>Orders</title></head><body>");
    let mut row = 0u64;
    while out.len() < 1024 * 1024 - 400 {
        row += 1;
        if row % 20 == 0 {
            let sentence: Vec<_> = (0..24).map(|_| words.next().unwrap()).collect();
            out.push_str(&format!("<p class=\"note\">{}.</p>\n", sentence.join(" ")));
        }
        out.push_str(&format!(
            "<tr class=\"row-{}\"><td>{row}</td><td><a href=\"/orders/{row}\">{}</a></td><td>{}</td><td>{}.{:02}</td></tr>\n",
            row % 2, words.next().unwrap(), words.next().unwrap(), row * 13 % 997, row % 100,
        ));
    }
    out.push_str("</body></html>");
    out.into_bytes()
}
