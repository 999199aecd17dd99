// hearth's importance-matrix shim: collect llama.cpp's imatrix by running a model over a text
// through the eval callback (`cb_eval`), then quantize with it. Written against the C API of
// llama.h, ggml.h and ggml-backend.h only; the symbols come from the llama.cpp library that
// llama-cpp-sys-2 links. The accumulation follows llama.cpp's tools/imatrix/imatrix.cpp
// (IMatrixCollector::collect_imatrix): for every GGML_OP_MUL_MAT / GGML_OP_MUL_MAT_ID whose first
// operand is a layer weight ("blk.N.*"), the sum of squares of the activations (the second
// operand) per input column, and the number of activation rows seen, per matrix (per expert for
// MUL_MAT_ID). Quantization uses the mean squares (sum / count), as llama-quantize does when it
// reads an imatrix file.
//
// The matrix can be saved and loaded in llama.cpp's GGUF imatrix format (tools/imatrix's
// save_imatrix: general.type = "imatrix", imatrix.datasets, imatrix.chunk_count,
// imatrix.chunk_size, and per weight two F32 tensors "<name>.in_sum2" [columns, matrices] and
// "<name>.counts" [1, matrices]), so a matrix made here, or by llama-imatrix, can be reused.
//
// No C++ exception crosses the extern "C" boundary: every entry point catches everything and
// returns a status with a message in the caller's buffer.

#include "ggml.h"
#include "ggml-backend.h"
#include "gguf.h"
#include "llama.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Stats {
    std::vector<float> sums;   // ne0 * n_mat
    std::vector<int64_t> counts; // n_mat (exact; the GGUF file stores them as F32, as llama.cpp does)
};

struct Collector {
    std::mutex mutex;
    std::map<std::string, Stats> stats;
    std::vector<char> src1_host;
    std::vector<char> ids_host;
    std::string error; // the first error the callback met (the graph is then cancelled)
};

// "CUDA0#blk.0.attn_q.weight#0" -> "blk.0.attn_q.weight" (the scheduler's copies of a tensor).
std::string filter_tensor_name(const char * name) {
    const char * p = std::strchr(name, '#');
    if (p == nullptr) {
        return name;
    }
    p += 1;
    const char * q = std::strchr(p, '#');
    return q != nullptr ? std::string(p, q - p) : std::string(p);
}

const char * host_data(const ggml_tensor * t, std::vector<char> & scratch) {
    if (t->buffer == nullptr || ggml_backend_buffer_is_host(t->buffer)) {
        return static_cast<const char *>(t->data);
    }
    scratch.resize(ggml_nbytes(t));
    ggml_backend_tensor_get(t, scratch.data(), 0, scratch.size());
    return scratch.data();
}

// Size `e` for `n_mat` matrices of `cols` inputs at its first call; later calls must see the same
// shape.
bool shape_stats(Stats & e, int64_t cols, int64_t n_mat, const std::string & name, std::string & error) {
    if (e.sums.empty()) {
        e.sums.assign(cols * n_mat, 0.0f);
        e.counts.assign(n_mat, 0);
    } else if (e.sums.size() != size_t(cols * n_mat)) {
        error = "the activations of " + name + " changed shape";
        return false;
    }
    return true;
}

bool add_row(Stats & e, size_t start, const float * x, int64_t n, const std::string & name, std::string & error) {
    for (int64_t j = 0; j < n; ++j) {
        e.sums[start + j] += x[j] * x[j];
        if (!std::isfinite(e.sums[start + j])) {
            error = "a non-finite activation sum in " + name;
            return false;
        }
    }
    return true;
}

bool collect(ggml_tensor * t, bool ask, void * user_data) {
    auto * c = static_cast<Collector *>(user_data);
    const ggml_tensor * src0 = t->src[0];
    const ggml_tensor * src1 = t->src[1];
    if (ask) {
        if (t->op == GGML_OP_MUL_MAT_ID) {
            return true;
        }
        if (t->op != GGML_OP_MUL_MAT) {
            return false;
        }
        // Small batches (< 16 rows) are skipped, as imatrix.cpp does.
        if (src1->ne[1] < 16 || src1->type != GGML_TYPE_F32) {
            return false;
        }
        return filter_tensor_name(src0->name).rfind("blk.", 0) == 0;
    }
    if (t->op != GGML_OP_MUL_MAT && t->op != GGML_OP_MUL_MAT_ID) {
        return true;
    }
    try {
        std::lock_guard<std::mutex> lock(c->mutex);
        const std::string wname = filter_tensor_name(src0->name);
        if (wname.rfind("blk.", 0) != 0 || src1->type != GGML_TYPE_F32) {
            return true;
        }
        if (src1->nb[0] != ggml_element_size(src1)) {
            c->error = "non-contiguous activations for " + wname;
            return false;
        }
        const char * data = host_data(src1, c->src1_host);
        auto & e = c->stats[wname];
        if (t->op == GGML_OP_MUL_MAT_ID) {
            // ids: [n_expert_used, n_tokens]; src1: [cols, n_expert_used or 1, n_tokens]
            const ggml_tensor * ids = t->src[2];
            const int64_t n_as = src0->ne[2];
            const int64_t n_ids = ids->ne[0];
            c->ids_host.resize(ggml_nbytes(ids));
            ggml_backend_tensor_get(ids, c->ids_host.data(), 0, c->ids_host.size());
            if (!shape_stats(e, src1->ne[0], n_as, wname, c->error)) {
                return false;
            }
            for (int64_t row = 0; row < src1->ne[2]; ++row) {
                for (int64_t idx = 0; idx < n_ids; ++idx) {
                    const int32_t ex = *reinterpret_cast<const int32_t *>(c->ids_host.data() + row * ids->nb[1] + idx * ids->nb[0]);
                    if (ex < 0 || ex >= n_as) {
                        c->error = "expert id out of range in " + wname;
                        return false;
                    }
                    const int64_t i11 = idx % src1->ne[1];
                    const float * x = reinterpret_cast<const float *>(data + i11 * src1->nb[1] + row * src1->nb[2]);
                    e.counts[ex] += 1;
                    if (!add_row(e, size_t(ex) * src1->ne[0], x, src1->ne[0], wname, c->error)) {
                        return false;
                    }
                }
            }
        } else {
            const int64_t n_mat = src1->ne[2] * src1->ne[3];
            if (!shape_stats(e, src1->ne[0], n_mat, wname, c->error)) {
                return false;
            }
            for (int64_t i3 = 0; i3 < src1->ne[3]; ++i3) {
                for (int64_t i2 = 0; i2 < src1->ne[2]; ++i2) {
                    const int64_t mat = i3 * src1->ne[2] + i2;
                    for (int64_t row = 0; row < src1->ne[1]; ++row) {
                        const float * x = reinterpret_cast<const float *>(data + row * src1->nb[1] + i2 * src1->nb[2] + i3 * src1->nb[3]);
                        e.counts[mat] += 1;
                        if (!add_row(e, size_t(mat) * src1->ne[0], x, src1->ne[0], wname, c->error)) {
                            return false;
                        }
                    }
                }
            }
        }
    } catch (const std::exception & ex) {
        c->error = ex.what();
        return false;
    } catch (...) {
        c->error = "unknown error in the eval callback";
        return false;
    }
    return true;
}

void set_error(char * buf, size_t len, const std::string & msg) {
    if (buf != nullptr && len > 0) {
        std::snprintf(buf, len, "%s", msg.c_str());
    }
}

struct ModelGuard {
    llama_model * model = nullptr;
    ~ModelGuard() { if (model) llama_model_free(model); }
};
struct ContextGuard {
    llama_context * ctx = nullptr;
    ~ContextGuard() { if (ctx) llama_free(ctx); }
};
struct BatchGuard {
    llama_batch batch;
    explicit BatchGuard(int32_t n) : batch(llama_batch_init(n, 0, 1)) {}
    ~BatchGuard() { llama_batch_free(batch); }
};

} // namespace

extern "C" {

// Status codes (mirrored in src/lib.rs).
enum {
    HEARTH_IMATRIX_OK = 0,
    HEARTH_IMATRIX_ERR_LOAD = 1,
    HEARTH_IMATRIX_ERR_CONTEXT = 2,
    HEARTH_IMATRIX_ERR_TEXT = 3,
    HEARTH_IMATRIX_ERR_DECODE = 4,
    HEARTH_IMATRIX_ERR_QUANTIZE = 5,
    HEARTH_IMATRIX_ERR_INTERNAL = 6,
};

struct hearth_imatrix_options {
    int32_t n_ctx;          // tokens per chunk
    int64_t max_tokens;     // at most this many tokens are run (whole chunks)
    int32_t n_threads;
    int32_t n_gpu_layers;
};

struct hearth_imatrix_summary {
    int64_t chunks;
    int64_t tokens;      // tokens run through the model
    int64_t text_tokens; // tokens of the whole text
    int64_t tensors;
};

struct hearth_imatrix {
    std::map<std::string, Stats> stats;
    std::vector<std::string> names; // the keys of `stats`, in order
    hearth_imatrix_summary summary;
    int64_t chunk_size;
    std::vector<std::string> datasets; // the calibration texts, as named in a GGUF imatrix
};

} // extern "C"

namespace {

// Run an entry point's `body` (which returns a status code) so that no C++ exception crosses the
// C boundary: one becomes HEARTH_IMATRIX_ERR_INTERNAL with its message in `err`.
template <typename Body> int guarded(char * err, size_t err_len, Body && body) {
    try {
        return body();
    } catch (const std::exception & ex) {
        set_error(err, err_len, ex.what());
    } catch (...) {
        set_error(err, err_len, "unknown C++ exception");
    }
    return HEARTH_IMATRIX_ERR_INTERNAL;
}

} // namespace

extern "C" {

int hearth_imatrix_collect(const char * model_path, const char * text, size_t text_len, const hearth_imatrix_options * opts,
                           hearth_imatrix ** out, char * err, size_t err_len) {
    return guarded(err, err_len, [&]() -> int {
        *out = nullptr;
        ModelGuard model;
        llama_model_params mp = llama_model_default_params();
        mp.n_gpu_layers = opts->n_gpu_layers;
        model.model = llama_model_load_from_file(model_path, mp);
        if (model.model == nullptr) {
            set_error(err, err_len, std::string("cannot load the model ") + model_path);
            return HEARTH_IMATRIX_ERR_LOAD;
        }
        const llama_vocab * vocab = llama_model_get_vocab(model.model);
        if (text_len > size_t(INT32_MAX)) {
            set_error(err, err_len, "the calibration text is too long to tokenize at once");
            return HEARTH_IMATRIX_ERR_TEXT;
        }
        std::vector<llama_token> tokens(text_len / 2 + 16);
        int32_t n = llama_tokenize(vocab, text, int32_t(text_len), tokens.data(), int32_t(tokens.size()), false, false);
        if (n < 0) {
            tokens.resize(size_t(-n));
            n = llama_tokenize(vocab, text, int32_t(text_len), tokens.data(), int32_t(tokens.size()), false, false);
        }
        if (n < 0) {
            set_error(err, err_len, "cannot tokenize the calibration text");
            return HEARTH_IMATRIX_ERR_TEXT;
        }
        tokens.resize(size_t(n));
        // A chunk longer than the model's training context would run past its positions.
        const int32_t n_ctx = std::min<int32_t>(opts->n_ctx, std::max<int32_t>(16, llama_model_n_ctx_train(model.model)));
        int64_t chunks = int64_t(tokens.size()) / n_ctx;
        if (opts->max_tokens > 0) {
            chunks = std::min<int64_t>(chunks, opts->max_tokens / n_ctx);
        }
        if (chunks < 1) {
            set_error(err, err_len, "the calibration text has " + std::to_string(tokens.size()) + " tokens (token budget " +
                                        std::to_string(opts->max_tokens) + "); one chunk needs " + std::to_string(n_ctx));
            return HEARTH_IMATRIX_ERR_TEXT;
        }

        Collector collector;
        ContextGuard ctx;
        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = uint32_t(n_ctx);
        cp.n_batch = uint32_t(n_ctx);
        cp.n_ubatch = uint32_t(n_ctx);
        cp.n_seq_max = 1;
        cp.n_threads = opts->n_threads;
        cp.n_threads_batch = opts->n_threads;
        cp.cb_eval = collect;
        cp.cb_eval_user_data = &collector;
        ctx.ctx = llama_init_from_model(model.model, cp);
        if (ctx.ctx == nullptr) {
            set_error(err, err_len, "cannot create a context of " + std::to_string(n_ctx) + " tokens");
            return HEARTH_IMATRIX_ERR_CONTEXT;
        }
        const bool add_bos = llama_vocab_get_add_bos(vocab);
        const llama_token bos = llama_vocab_bos(vocab);
        BatchGuard batch(n_ctx);
        for (int64_t chunk = 0; chunk < chunks; ++chunk) {
            llama_memory_clear(llama_get_memory(ctx.ctx), true);
            batch.batch.n_tokens = n_ctx;
            for (int32_t i = 0; i < n_ctx; ++i) {
                llama_token tok = tokens[size_t(chunk * n_ctx + i)];
                if (i == 0 && add_bos && bos != LLAMA_TOKEN_NULL) {
                    tok = bos;
                }
                batch.batch.token[i] = tok;
                batch.batch.pos[i] = i;
                batch.batch.n_seq_id[i] = 1;
                batch.batch.seq_id[i][0] = 0;
                // Every position is an output, as in imatrix.cpp: otherwise the last layer runs
                // only the output rows and its matrices would see too few rows to be collected.
                batch.batch.logits[i] = 1;
            }
            const int32_t rc = llama_decode(ctx.ctx, batch.batch);
            if (!collector.error.empty()) {
                set_error(err, err_len, collector.error);
                return HEARTH_IMATRIX_ERR_DECODE;
            }
            if (rc != 0) {
                set_error(err, err_len, "llama_decode failed with status " + std::to_string(rc) + " on chunk " + std::to_string(chunk));
                return HEARTH_IMATRIX_ERR_DECODE;
            }
        }
        auto * m = new hearth_imatrix();
        m->stats = std::move(collector.stats);
        for (const auto & kv : m->stats) {
            m->names.push_back(kv.first);
        }
        m->summary.chunks = chunks;
        m->summary.tokens = chunks * n_ctx;
        m->summary.text_tokens = int64_t(tokens.size());
        m->summary.tensors = int64_t(m->names.size());
        m->chunk_size = n_ctx;
        *out = m;
        return HEARTH_IMATRIX_OK;
    });
}

void hearth_imatrix_summary_of(const hearth_imatrix * m, hearth_imatrix_summary * out) {
    *out = m->summary;
}

// The i-th tensor (in name order): its name, sums of squares (n_values) and counts (n_mat).
int hearth_imatrix_entry(const hearth_imatrix * m, size_t i, const char ** name, const float ** sums, size_t * n_values,
                         const int64_t ** counts, size_t * n_mat) {
    if (i >= m->names.size()) {
        return HEARTH_IMATRIX_ERR_INTERNAL;
    }
    const auto & key = m->names[i];
    const auto it = m->stats.find(key);
    if (it == m->stats.end()) {
        return HEARTH_IMATRIX_ERR_INTERNAL;
    }
    *name = key.c_str();
    *sums = it->second.sums.data();
    *n_values = it->second.sums.size();
    *counts = it->second.counts.data();
    *n_mat = it->second.counts.size();
    return HEARTH_IMATRIX_OK;
}

// Quantize `input` into `output` with the mean squares as llama.cpp's importance matrix. A matrix
// that never saw input gets ones (no preference), as llama-quantize does.
int hearth_imatrix_quantize(const hearth_imatrix * m, const char * input, const char * output, int32_t ftype, int32_t n_threads,
                            bool allow_requantize, char * err, size_t err_len) {
    return guarded(err, err_len, [&]() -> int {
        std::vector<std::vector<float>> means;
        std::vector<llama_model_imatrix_data> table;
        means.reserve(m->names.size());
        for (const auto & name : m->names) {
            const Stats & s = m->stats.at(name);
            const size_t n_mat = s.counts.size();
            const size_t ne0 = n_mat > 0 ? s.sums.size() / n_mat : 0;
            std::vector<float> mean(s.sums.size(), 1.0f);
            for (size_t j = 0; j < n_mat; ++j) {
                if (s.counts[j] > 0) {
                    for (size_t i = 0; i < ne0; ++i) {
                        mean[j * ne0 + i] = s.sums[j * ne0 + i] / float(s.counts[j]);
                    }
                }
            }
            means.push_back(std::move(mean));
            table.push_back(llama_model_imatrix_data{name.c_str(), means.back().data(), means.back().size()});
        }
        table.push_back(llama_model_imatrix_data{nullptr, nullptr, 0});
        llama_model_quantize_params params = llama_model_quantize_default_params();
        params.ftype = llama_ftype(ftype);
        params.nthread = n_threads;
        params.allow_requantize = allow_requantize;
        params.imatrix = table.data();
        const uint32_t rc = llama_model_quantize(input, output, &params);
        if (rc != 0) {
            set_error(err, err_len, "llama_model_quantize failed with status " + std::to_string(rc) + " (llama.cpp's log says why)");
            return HEARTH_IMATRIX_ERR_QUANTIZE;
        }
        return HEARTH_IMATRIX_OK;
    });
}

// Write the matrix as a GGUF imatrix file naming `dataset` as its calibration text.
int hearth_imatrix_save(const hearth_imatrix * m, const char * path, const char * dataset, char * err, size_t err_len) {
    return guarded(err, err_len, [&]() -> int {
        size_t data = 0;
        for (const auto & kv : m->stats) {
            data += (kv.second.sums.size() + kv.second.counts.size()) * sizeof(float);
        }
        ggml_init_params ip = {data + 2 * m->stats.size() * (ggml_tensor_overhead() + 64) + 1024, nullptr, false};
        ggml_context * ctx = ggml_init(ip);
        if (ctx == nullptr) {
            set_error(err, err_len, "cannot allocate the imatrix tensors");
            return HEARTH_IMATRIX_ERR_INTERNAL;
        }
        gguf_context * g = gguf_init_empty();
        gguf_set_val_str(g, "general.type", "imatrix");
        std::vector<const char *> datasets;
        for (const auto & d : m->datasets) {
            datasets.push_back(d.c_str());
        }
        if (dataset != nullptr) {
            datasets.push_back(dataset);
        }
        gguf_set_arr_str(g, "imatrix.datasets", datasets.data(), datasets.size());
        gguf_set_val_u32(g, "imatrix.chunk_count", uint32_t(m->summary.chunks));
        gguf_set_val_u32(g, "imatrix.chunk_size", uint32_t(m->chunk_size));
        for (const auto & name : m->names) {
            const Stats & s = m->stats.at(name);
            const int64_t n_mat = int64_t(s.counts.size());
            if (n_mat == 0 || s.sums.empty()) {
                continue;
            }
            ggml_tensor * sums = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, int64_t(s.sums.size()) / n_mat, n_mat);
            ggml_tensor * counts = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 1, n_mat);
            ggml_format_name(sums, "%s.in_sum2", name.c_str());
            ggml_format_name(counts, "%s.counts", name.c_str());
            std::memcpy(sums->data, s.sums.data(), s.sums.size() * sizeof(float));
            for (size_t j = 0; j < s.counts.size(); ++j) {
                static_cast<float *>(counts->data)[j] = float(s.counts[j]);
            }
            gguf_add_tensor(g, sums);
            gguf_add_tensor(g, counts);
        }
        const bool ok = gguf_write_to_file(g, path, false);
        gguf_free(g);
        ggml_free(ctx);
        if (!ok) {
            set_error(err, err_len, std::string("cannot write ") + path);
            return HEARTH_IMATRIX_ERR_INTERNAL;
        }
        return HEARTH_IMATRIX_OK;
    });
}

// Read a GGUF imatrix file (llama-imatrix's or hearth's).
int hearth_imatrix_load(const char * path, hearth_imatrix ** out, char * err, size_t err_len) {
    return guarded(err, err_len, [&]() -> int {
        *out = nullptr;
        // The header first (no tensor data), so that a model file given by mistake is refused
        // without being read into memory.
        gguf_context * meta = gguf_init_from_file(path, gguf_init_params{true, nullptr});
        if (meta == nullptr) {
            set_error(err, err_len, std::string(path) + " is not a GGUF file (llama.cpp's older .dat imatrix files are not read: convert one with llama-imatrix --in-file FILE.dat -o FILE.gguf)");
            return HEARTH_IMATRIX_ERR_TEXT;
        }
        const int64_t type_key = gguf_find_key(meta, "general.type");
        const bool is_imatrix = type_key >= 0 && gguf_get_kv_type(meta, type_key) == GGUF_TYPE_STRING &&
                                std::string(gguf_get_val_str(meta, type_key)) == "imatrix";
        gguf_free(meta);
        if (!is_imatrix) {
            set_error(err, err_len, std::string(path) + " is a GGUF file but not an imatrix (general.type is not \"imatrix\")");
            return HEARTH_IMATRIX_ERR_TEXT;
        }
        ggml_context * ctx = nullptr;
        gguf_context * g = gguf_init_from_file(path, gguf_init_params{false, &ctx});
        if (g == nullptr) {
            set_error(err, err_len, std::string("cannot read the tensors of ") + path);
            return HEARTH_IMATRIX_ERR_TEXT;
        }
        struct Free {
            gguf_context * g;
            ggml_context ** ctx;
            ~Free() { gguf_free(g); if (*ctx) ggml_free(*ctx); }
        } guard{g, &ctx};
        auto * m = new hearth_imatrix();
        std::unique_ptr<hearth_imatrix> owned(m);
        const int64_t chunks_key = gguf_find_key(g, "imatrix.chunk_count");
        const int64_t size_key = gguf_find_key(g, "imatrix.chunk_size");
        const int64_t datasets_key = gguf_find_key(g, "imatrix.datasets");
        m->summary.chunks = chunks_key >= 0 ? int64_t(gguf_get_val_u32(g, chunks_key)) : 0;
        m->chunk_size = size_key >= 0 ? int64_t(gguf_get_val_u32(g, size_key)) : 0;
        if (datasets_key >= 0 && gguf_get_kv_type(g, datasets_key) == GGUF_TYPE_ARRAY && gguf_get_arr_type(g, datasets_key) == GGUF_TYPE_STRING) {
            for (size_t i = 0; i < gguf_get_arr_n(g, datasets_key); ++i) {
                m->datasets.emplace_back(gguf_get_arr_str(g, datasets_key, i));
            }
        }
        const std::string sums_suffix = ".in_sum2";
        for (ggml_tensor * t = ggml_get_first_tensor(ctx); t != nullptr; t = ggml_get_next_tensor(ctx, t)) {
            const std::string name = ggml_get_name(t);
            if (name.size() <= sums_suffix.size() || name.compare(name.size() - sums_suffix.size(), sums_suffix.size(), sums_suffix) != 0) {
                continue;
            }
            const std::string base = name.substr(0, name.size() - sums_suffix.size());
            ggml_tensor * counts = ggml_get_tensor(ctx, (base + ".counts").c_str());
            if (counts == nullptr || t->type != GGML_TYPE_F32 || counts->type != GGML_TYPE_F32 || counts->ne[1] != t->ne[1] ||
                ggml_nelements(counts) != t->ne[1] || ggml_nelements(t) != t->ne[0] * t->ne[1]) {
                set_error(err, err_len, std::string(path) + ": " + base + " has no matching F32 .counts tensor");
                return HEARTH_IMATRIX_ERR_TEXT;
            }
            Stats & s = m->stats[base];
            const float * sums = static_cast<const float *>(t->data);
            const float * c = static_cast<const float *>(counts->data);
            s.sums.assign(sums, sums + ggml_nelements(t));
            for (int64_t j = 0; j < ggml_nelements(counts); ++j) {
                if (!std::isfinite(c[j]) || c[j] < 0.0f) {
                    set_error(err, err_len, std::string(path) + ": " + base + " holds a negative or non-finite count");
                    return HEARTH_IMATRIX_ERR_TEXT;
                }
                s.counts.push_back(int64_t(std::llround(c[j])));
            }
            for (float v : s.sums) {
                if (!std::isfinite(v) || v < 0.0f) {
                    set_error(err, err_len, std::string(path) + ": " + base + " holds a negative or non-finite sum");
                    return HEARTH_IMATRIX_ERR_TEXT;
                }
            }
        }
        if (m->stats.empty()) {
            set_error(err, err_len, std::string(path) + " holds no <weight>.in_sum2 tensors");
            return HEARTH_IMATRIX_ERR_TEXT;
        }
        for (const auto & kv : m->stats) {
            m->names.push_back(kv.first);
        }
        m->summary.tokens = m->summary.chunks * m->chunk_size;
        m->summary.text_tokens = 0;
        m->summary.tensors = int64_t(m->names.size());
        *out = owned.release();
        return HEARTH_IMATRIX_OK;
    });
}

// The i-th calibration text named by the matrix (a loaded GGUF imatrix's imatrix.datasets).
const char * hearth_imatrix_dataset(const hearth_imatrix * m, size_t i) {
    return i < m->datasets.size() ? m->datasets[i].c_str() : nullptr;
}

void hearth_imatrix_free(hearth_imatrix * m) {
    delete m;
}

} // extern "C"
