// Stub so the workspace builds until the real benchmark is written (overwrite me).
fn main() {}
