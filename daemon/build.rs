//! The run path of `hearth`: llama.cpp's shared libraries (libllama, libggml, libggml-base) are
//! found in `lib/` beside the binary in a build tree (engine/build.rs puts them there) and in
//! `../lib64/hearth` for an installed `/usr/bin/hearth` (the RPM). DT_RPATH rather than RUNPATH,
//! so it also serves the libraries' own dependencies on each other.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=-Wl,--disable-new-dtags,-rpath,$ORIGIN/lib:$ORIGIN/../lib64/hearth");
}
