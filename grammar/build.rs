//! Compiles llama.cpp's JSON-schema-to-GBNF converter (one translation unit, `cpp/shim.cpp`) from
//! the llama.cpp sources that ship inside the `llama-cpp-sys-2` crate, without its `common`
//! feature (which rebuilds all of llama.cpp). The tree is found by `build-support/llama_tree.rs`,
//! shared with the calibration crate's build script.

#[path = "../build-support/llama_tree.rs"]
mod llama_tree;

const SOURCES: [&str; 5] = ["json-schema-to-grammar.cpp", "json-schema.cpp", "json.cpp", "trie.cpp", "unicode.cpp"];

fn main() {
    println!("cargo:rerun-if-changed=cpp/shim.cpp");
    println!("cargo:rerun-if-changed=../build-support/llama_tree.rs");
    let tree = llama_tree::find("common/json-schema-to-grammar.cpp")
        .unwrap_or_else(|why| panic!("hearth-grammar: cannot find llama.cpp's sources: {why}"));
    for file in SOURCES {
        println!("cargo:rerun-if-changed={}", tree.join("common").join(file).display());
    }
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("cpp/shim.cpp")
        .include(tree.join("common"))
        .include(tree.join("include"))
        .include(tree.join("ggml/include"))
        .include(tree.join("vendor"))
        .warnings(false)
        .compile("hearth_schema_grammar");
}
