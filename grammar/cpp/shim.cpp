// llama.cpp's JSON-schema-to-GBNF converter, compiled as one translation unit, behind a C function
// that never lets a C++ exception cross into Rust.
//
// The converter needs json.cpp (common_json over nlohmann's ordered_json, so property order is
// kept), json-schema.cpp (the schema model), trie.cpp and unicode.cpp, and three string helpers of
// common.cpp, defined below instead of compiling common.cpp (which pulls in the whole library).
//
// json.cpp maps the JSON library's internal assertions to GGML_ASSERT (ggml_abort: print, abort).
// They fire only on a bug in the library, never on input; here they print and abort the same way
// without linking ggml, so this translation unit stands alone.

#include <cstdio>
#include <cstdlib>

#include "ggml.h"
#undef GGML_ASSERT
#define GGML_ASSERT(x) \
    do { \
        if (!(x)) { \
            std::fprintf(stderr, "%s:%d: JSON library assertion failed: %s\n", __FILE__, __LINE__, #x); \
            std::abort(); \
        } \
    } while (0)

#include "json.cpp"
#include "json-schema.cpp"
#include "unicode.cpp"
#include "trie.cpp"
#include "json-schema-to-grammar.cpp"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

// --- the three helpers of common.cpp the converter calls (same definitions as there) ---

std::string string_join(const std::vector<std::string> & values, const std::string & separator) {
    std::ostringstream result;
    for (size_t i = 0; i < values.size(); ++i) {
        if (i > 0) {
            result << separator;
        }
        result << values[i];
    }
    return result.str();
}

std::vector<std::string> string_split(const std::string & str, const std::string & delimiter) {
    std::vector<std::string> parts;
    size_t start = 0;
    size_t end = str.find(delimiter);
    while (end != std::string::npos) {
        parts.push_back(str.substr(start, end - start));
        start = end + delimiter.length();
        end = str.find(delimiter, start);
    }
    parts.push_back(str.substr(start));
    return parts;
}

std::string string_repeat(const std::string & str, size_t n) {
    std::string result;
    result.reserve(str.length() * n);
    for (size_t i = 0; i < n; ++i) {
        result += str;
    }
    return result;
}

// --- the C boundary ---

static char * copy_out(const std::string & s, size_t * len) {
    char * out = static_cast<char *>(std::malloc(s.size() + 1));
    if (out != nullptr) {
        std::memcpy(out, s.data(), s.size());
        out[s.size()] = '\0';
        *len = s.size();
    }
    return out;
}

// Converts the JSON schema `schema` (`schema_len` bytes of UTF-8) to GBNF whose root rule is
// `root`. Returns 0 with the grammar in `*out`, 1 with an error message in `*out`, 2 when even the
// message could not be allocated (`*out` is then null). `*out` is freed with hearth_grammar_free.
extern "C" int hearth_json_schema_to_grammar(const char * schema, size_t schema_len, char ** out, size_t * out_len) {
    *out = nullptr;
    *out_len = 0;
    std::string message;
    try {
        common_json parsed = common_json::parse(std::string(schema, schema_len));
        std::string grammar = json_schema_to_grammar(parsed, /* force_gbnf = */ true);
        *out = copy_out(grammar, out_len);
        return *out == nullptr ? 2 : 0;
    } catch (const std::exception & e) {
        message = e.what();
    } catch (...) {
        message = "the converter failed with an exception that is not a std::exception";
    }
    try {
        *out = copy_out(message, out_len);
    } catch (...) {
        *out = nullptr;
    }
    return *out == nullptr ? 2 : 1;
}

extern "C" void hearth_grammar_free(char * p) {
    std::free(p);
}
