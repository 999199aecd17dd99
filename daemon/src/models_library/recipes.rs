//! Quantization recipes: TOML files named after LLM Compressor's schemes (`w4a16`, `w8a8-int8`,
//! `fp16`) that map onto a GGUF weight type. The built-in ones are `config/recipes/*.toml`,
//! compiled in; `--recipe FILE.toml` reads a user's file of the same shape. Each file's comment
//! explains what the GGUF type keeps of the scheme; GGUF types are weight-only.

use std::path::Path;

use engine::quantize::TargetType;
use serde::Deserialize;

use super::LibraryError;

/// The built-in recipes, as shipped in `config/recipes/`.
const BUILT_IN: &[&str] = &[
    include_str!("../../../config/recipes/w4a16.toml"),
    include_str!("../../../config/recipes/w4a16-q4_0.toml"),
    include_str!("../../../config/recipes/w8a8-int8.toml"),
    include_str!("../../../config/recipes/fp16.toml"),
    include_str!("../../../config/recipes/w3a16.toml"),
    include_str!("../../../config/recipes/w2a16.toml"),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    name: String,
    scheme: String,
    ggml_type: String,
    description: String,
}

/// A recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: String,
    /// LLM Compressor's scheme name (`W4A16`).
    pub scheme: String,
    pub target: TargetType,
    pub description: String,
}

fn parse(text: &str, origin: &str) -> Result<Recipe, LibraryError> {
    let f: RecipeFile = toml::from_str(text).map_err(|e| LibraryError::Invalid(format!("recipe {origin}: {e}")))?;
    let target = TargetType::parse(&f.ggml_type).ok_or_else(|| {
        LibraryError::Invalid(format!(
            "recipe {origin}: ggml_type {:?} is not one hearth quantizes to (F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_K_S, Q4_0, Q3_K_S, Q2_K)",
            f.ggml_type
        ))
    })?;
    Ok(Recipe { name: f.name, scheme: f.scheme, target, description: f.description })
}

/// Every built-in recipe.
pub fn built_in() -> Vec<Recipe> {
    BUILT_IN.iter().filter_map(|t| parse(t, "built-in").ok()).collect()
}

/// A built-in recipe by name, or a recipe file.
pub fn find(name_or_file: &str) -> Result<Recipe, LibraryError> {
    if let Some(r) = built_in().into_iter().find(|r| r.name.eq_ignore_ascii_case(name_or_file)) {
        return Ok(r);
    }
    let path = Path::new(name_or_file);
    if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
        let text = std::fs::read_to_string(path).map_err(LibraryError::io(format!("cannot read {}", path.display())))?;
        return parse(&text, &path.display().to_string());
    }
    let names: Vec<String> = built_in().into_iter().map(|r| r.name).collect();
    let fp8 = if name_or_file.to_ascii_lowercase().starts_with("fp8") {
        " GGUF has no FP8 weight type; w8a8-int8 (Q8_0) is the 8-bit recipe."
    } else {
        ""
    };
    Err(LibraryError::Invalid(format!("no recipe {name_or_file:?}: the built-in ones are {} (or give a recipe .toml file).{fp8}", names.join(", "))))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_recipe_parses_and_maps() {
        assert_eq!(built_in().len(), BUILT_IN.len(), "a shipped recipe does not parse");
        assert_eq!(find("w4a16").unwrap().target, TargetType::Q4KM);
        assert_eq!(find("W8A8-INT8").unwrap().target, TargetType::Q8_0);
        assert_eq!(find("fp16").unwrap().target, TargetType::F16);
        assert_eq!(find("w4a16-q4_0").unwrap().target, TargetType::Q4_0);
        assert_eq!(find("w3a16").unwrap().target, TargetType::Q3KS);
        assert_eq!(find("w2a16").unwrap().target, TargetType::Q2K);
        let e = find("fp8-dynamic").unwrap_err().to_string();
        assert!(e.contains("no FP8") && e.contains("w4a16"), "{e}");
    }

    #[test]
    fn a_recipe_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q6.toml");
        std::fs::write(&p, "name = \"w6\"\nscheme = \"W6A16\"\nggml_type = \"Q6_K\"\ndescription = \"six\"\n").unwrap();
        assert_eq!(find(p.to_str().unwrap()).unwrap().target, TargetType::Q6K);
        std::fs::write(&p, "name = \"w2\"\nscheme = \"W2A16\"\nggml_type = \"IQ2_XXS\"\ndescription = \"two\"\n").unwrap();
        let e = find(p.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("IQ2_XXS"), "{e}");
    }
}
