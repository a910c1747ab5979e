fn main() {
    eprintln!("ctsim: not wired yet");
    std::process::exit(2);
}
