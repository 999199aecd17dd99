/* Check that a ggml backend library loads into the ggml it was built with: dlopen it, run its
 * ggml_backend_init, and compare the API version it reports with GGML_BACKEND_API_VERSION of the
 * same llama.cpp tree (ggml silently skips a backend whose version differs). Prints the backend's
 * name and device count; exit status 0 when the versions match.
 *
 *   cc -I SRC/ggml/include -I SRC/ggml/src check_backend.c -ldl -o check_backend
 *   LD_LIBRARY_PATH=BUILD/bin ./check_backend BUILD/bin/libggml-cuda.so
 */
#include <dlfcn.h>
#include <stdio.h>

#include "ggml-backend-impl.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s LIBGGML-BACKEND.so\n", argv[0]);
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "FAIL: cannot load %s: %s\n", argv[1], dlerror());
        return 1;
    }
    ggml_backend_init_t init = (ggml_backend_init_t) dlsym(lib, "ggml_backend_init");
    if (!init) {
        fprintf(stderr, "FAIL: %s has no ggml_backend_init\n", argv[1]);
        return 1;
    }
    ggml_backend_reg_t reg = init();
    if (!reg) {
        fprintf(stderr, "FAIL: ggml_backend_init of %s returned NULL\n", argv[1]);
        return 1;
    }
    if (reg->api_version != GGML_BACKEND_API_VERSION) {
        fprintf(stderr, "FAIL: %s has backend API version %d, this llama.cpp tree has %d\n", argv[1], reg->api_version,
                GGML_BACKEND_API_VERSION);
        return 1;
    }
    printf("OK: %s: backend %s, API version %d, %zu device(s) visible here\n", argv[1], reg->iface.get_name(reg),
           reg->api_version, reg->iface.get_device_count(reg));
    return 0;
}
