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
// No C++ exception crosses the extern "C" boundary: every entry point catches everything and
// returns a status with a message in the caller's buffer.

#include "ggml.h"
#include "ggml-backend.h"
#include "llama.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Stats {
    std::vector<float> sums;   // ne0 * n_mat
    std::vector<float> counts; // n_mat
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
            if (e.sums.empty()) {
                e.sums.assign(src1->ne[0] * n_as, 0.0f);
                e.counts.assign(n_as, 0.0f);
            } else if (e.sums.size() != size_t(src1->ne[0] * n_as)) {
                c->error = "the activations of " + wname + " changed shape";
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
                    e.counts[ex] += 1.0f;
                    if (!add_row(e, size_t(ex) * src1->ne[0], x, src1->ne[0], wname, c->error)) {
                        return false;
                    }
                }
            }
        } else {
            const int64_t n_mat = src1->ne[2] * src1->ne[3];
            if (e.sums.empty()) {
                e.sums.assign(src1->ne[0] * n_mat, 0.0f);
                e.counts.assign(n_mat, 0.0f);
            } else if (e.sums.size() != size_t(src1->ne[0] * n_mat)) {
                c->error = "the activations of " + wname + " changed shape";
                return false;
            }
            for (int64_t i3 = 0; i3 < src1->ne[3]; ++i3) {
                for (int64_t i2 = 0; i2 < src1->ne[2]; ++i2) {
                    const int64_t mat = i3 * src1->ne[2] + i2;
                    for (int64_t row = 0; row < src1->ne[1]; ++row) {
                        const float * x = reinterpret_cast<const float *>(data + row * src1->nb[1] + i2 * src1->nb[2] + i3 * src1->nb[3]);
                        e.counts[mat] += 1.0f;
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
};

int hearth_imatrix_collect(const char * model_path, const char * text, size_t text_len, const hearth_imatrix_options * opts,
                           hearth_imatrix ** out, char * err, size_t err_len) {
    try {
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
        const int32_t n_ctx = opts->n_ctx;
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
        *out = m;
        return HEARTH_IMATRIX_OK;
    } catch (const std::exception & ex) {
        set_error(err, err_len, ex.what());
        return HEARTH_IMATRIX_ERR_INTERNAL;
    } catch (...) {
        set_error(err, err_len, "unknown C++ exception");
        return HEARTH_IMATRIX_ERR_INTERNAL;
    }
}

void hearth_imatrix_summary_of(const hearth_imatrix * m, hearth_imatrix_summary * out) {
    *out = m->summary;
}

// The i-th tensor (in name order): its name, sums of squares (n_values) and counts (n_mat).
int hearth_imatrix_entry(const hearth_imatrix * m, size_t i, const char ** name, const float ** sums, size_t * n_values,
                         const float ** counts, size_t * n_mat) {
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
    try {
        std::vector<std::vector<float>> means;
        std::vector<llama_model_imatrix_data> table;
        means.reserve(m->names.size());
        for (const auto & name : m->names) {
            const Stats & s = m->stats.at(name);
            const size_t n_mat = s.counts.size();
            const size_t ne0 = n_mat > 0 ? s.sums.size() / n_mat : 0;
            std::vector<float> mean(s.sums.size(), 1.0f);
            for (size_t j = 0; j < n_mat; ++j) {
                if (s.counts[j] > 0.0f) {
                    for (size_t i = 0; i < ne0; ++i) {
                        mean[j * ne0 + i] = s.sums[j * ne0 + i] / s.counts[j];
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
    } catch (const std::exception & ex) {
        set_error(err, err_len, ex.what());
        return HEARTH_IMATRIX_ERR_INTERNAL;
    } catch (...) {
        set_error(err, err_len, "unknown C++ exception");
        return HEARTH_IMATRIX_ERR_INTERNAL;
    }
}

void hearth_imatrix_free(hearth_imatrix * m) {
    delete m;
}

} // extern "C"
