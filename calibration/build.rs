//! Compiles `cpp/imatrix.cpp`, hearth's importance-matrix shim, against the headers of the
//! llama.cpp tree inside the `llama-cpp-sys-2` crate (found by `build-support/llama_tree.rs`,
//! shared with the grammar crate). Only llama.h, ggml.h and ggml-backend.h are used: the symbols
//! come from the llama.cpp library that `llama-cpp-sys-2` builds and links.

#[path = "../build-support/llama_tree.rs"]
mod llama_tree;

fn main() {
    println!("cargo:rerun-if-changed=cpp/imatrix.cpp");
    println!("cargo:rerun-if-changed=../build-support/llama_tree.rs");
    let tree = llama_tree::find("include/llama.h").unwrap_or_else(|why| panic!("hearth-calibration: cannot find llama.cpp's headers: {why}"));
    println!("cargo:rerun-if-changed={}", tree.join("include/llama.h").display());
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("cpp/imatrix.cpp")
        .include(tree.join("include"))
        .include(tree.join("ggml/include"))
        .warnings(true)
        .compile("hearth_imatrix");
}
