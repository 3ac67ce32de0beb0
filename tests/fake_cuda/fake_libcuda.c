/*
 * TEST DOUBLE of the NVIDIA CUDA driver library (libcuda.so), for faultline's tests only.
 *
 * It is NOT a CUDA implementation. It exports only the driver entry points faultline's
 * src/gpu/driver.rs calls (the exact symbol names cudarc loads, several of them `_v2`), and
 * backs "device memory" with host memory, so the real `faultline gpu-hog` binary can be run
 * end to end on machines without a GPU. The tests compile it with
 *     cc -shared -fPIC -o <tmpdir>/libcuda.so fake_libcuda.c
 * and put <tmpdir> on LD_LIBRARY_PATH.
 *
 * Environment:
 *   FAKE_CUDA_DEVICES          device count (default 1)
 *   FAKE_CUDA_TOTAL_MIB        memory per device (default 1024)
 *   FAKE_CUDA_USED_MIB         memory per device already used by "someone else" (default 0)
 *   FAKE_CUDA_FAIL_ALLOC_AFTER the allocation after this many successful ones fails with
 *                              CUDA_ERROR_OUT_OF_MEMORY (default: never)
 *   FAKE_CUDA_INIT_ERROR       cuInit returns this CUresult (default 0, success)
 *   FAKE_CUDA_LOG              append one line per event to this file:
 *                                <ms since boot> alloc dev=D ptr=P bytes=N
 *                                <ms since boot> memset dev=D ptr=P bytes=N
 *                                <ms since boot> free dev=D ptr=P bytes=N written=W
 *                              where W is 1 when every byte of the block still holds the value
 *                              the last memset wrote over the whole block.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int CUresult; /* the values faultline may see, as in cuda.h */
enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_NO_DEVICE = 100,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_CONTEXT = 201,
};
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct fake_ctx *CUcontext;

#define MAX_DEVICES 16
#define MIB (1024ULL * 1024ULL)

struct fake_ctx { int device; int retained; };
struct block { CUdeviceptr ptr; size_t bytes; int device; int set; unsigned char value; struct block *next; };

static int initialized;
static int device_count = 1;
static size_t total_bytes = 1024 * MIB;
static size_t used_bytes[MAX_DEVICES];
static struct fake_ctx contexts[MAX_DEVICES];
static struct block *blocks;
static long allocs_left = -1; /* -1: unlimited */
static __thread int current = -1; /* the device whose context is current on this thread */

static long env_long(const char *name, long fallback) {
    const char *v = getenv(name);
    return (v && *v) ? strtol(v, NULL, 10) : fallback;
}

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...) {
    const char *path = getenv("FAKE_CUDA_LOG");
    if (!path || !*path) return;
    FILE *f = fopen(path, "a");
    if (!f) return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    fprintf(f, "%lld ", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
}

static struct block *find(CUdeviceptr ptr, struct block ***link) {
    struct block **l = &blocks;
    for (; *l; l = &(*l)->next) {
        if ((*l)->ptr == ptr) {
            if (link) *link = l;
            return *l;
        }
    }
    return NULL;
}

CUresult cuInit(unsigned int flags) {
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    CUresult forced = (CUresult)env_long("FAKE_CUDA_INIT_ERROR", 0);
    if (forced != CUDA_SUCCESS) return forced;
    device_count = (int)env_long("FAKE_CUDA_DEVICES", 1);
    if (device_count < 0 || device_count > MAX_DEVICES) return CUDA_ERROR_INVALID_VALUE;
    total_bytes = (size_t)env_long("FAKE_CUDA_TOTAL_MIB", 1024) * MIB;
    for (int i = 0; i < MAX_DEVICES; i++) used_bytes[i] = (size_t)env_long("FAKE_CUDA_USED_MIB", 0) * MIB;
    allocs_left = env_long("FAKE_CUDA_FAIL_ALLOC_AFTER", -1);
    initialized = 1;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetCount(int *count) {
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!count) return CUDA_ERROR_INVALID_VALUE;
    *count = device_count;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice *device, int ordinal) {
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!device) return CUDA_ERROR_INVALID_VALUE;
    if (ordinal < 0 || ordinal >= device_count) return CUDA_ERROR_INVALID_DEVICE;
    *device = ordinal;
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev) {
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!ctx) return CUDA_ERROR_INVALID_VALUE;
    if (dev < 0 || dev >= device_count) return CUDA_ERROR_INVALID_DEVICE;
    contexts[dev].device = dev;
    contexts[dev].retained++;
    *ctx = &contexts[dev];
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev < 0 || dev >= device_count || contexts[dev].retained == 0) return CUDA_ERROR_INVALID_DEVICE;
    contexts[dev].retained--;
    log_line("ctx-release dev=%d", dev);
    return CUDA_SUCCESS;
}

CUresult cuCtxSetCurrent(CUcontext ctx) {
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!ctx) { current = -1; return CUDA_SUCCESS; }
    if (ctx < contexts || ctx >= contexts + device_count || ctx->retained == 0) return CUDA_ERROR_INVALID_CONTEXT;
    current = ctx->device;
    return CUDA_SUCCESS;
}

CUresult cuCtxSynchronize(void) {
    return current < 0 ? CUDA_ERROR_INVALID_CONTEXT : CUDA_SUCCESS;
}

CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total) {
    if (current < 0) return CUDA_ERROR_INVALID_CONTEXT;
    if (!free_bytes || !total) return CUDA_ERROR_INVALID_VALUE;
    *total = total_bytes;
    *free_bytes = used_bytes[current] >= total_bytes ? 0 : total_bytes - used_bytes[current];
    return CUDA_SUCCESS;
}

CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytes) {
    if (current < 0) return CUDA_ERROR_INVALID_CONTEXT;
    if (!dptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    if (allocs_left == 0 || bytes > total_bytes - used_bytes[current]) return CUDA_ERROR_OUT_OF_MEMORY;
    void *mem = malloc(bytes);
    struct block *b = calloc(1, sizeof *b);
    if (!mem || !b) { free(mem); free(b); return CUDA_ERROR_OUT_OF_MEMORY; }
    if (allocs_left > 0) allocs_left--;
    b->ptr = (CUdeviceptr)(uintptr_t)mem;
    b->bytes = bytes;
    b->device = current;
    b->next = blocks;
    blocks = b;
    used_bytes[current] += bytes;
    *dptr = b->ptr;
    log_line("alloc dev=%d ptr=%llu bytes=%zu", current, b->ptr, bytes);
    return CUDA_SUCCESS;
}

CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t n) {
    if (current < 0) return CUDA_ERROR_INVALID_CONTEXT;
    struct block *b = find(dst, NULL);
    /* Like the real driver, only ranges inside one allocation of the current device. */
    if (!b || b->device != current || n > b->bytes) return CUDA_ERROR_INVALID_VALUE;
    memset((void *)(uintptr_t)dst, value, n);
    if (n == b->bytes) { b->set = 1; b->value = value; }
    log_line("memset dev=%d ptr=%llu bytes=%zu", current, dst, n);
    return CUDA_SUCCESS;
}

CUresult cuMemFree_v2(CUdeviceptr ptr) {
    if (current < 0) return CUDA_ERROR_INVALID_CONTEXT;
    struct block **link = NULL;
    struct block *b = find(ptr, &link);
    if (!b) return CUDA_ERROR_INVALID_VALUE;
    int written = b->set;
    const unsigned char *p = (const unsigned char *)(uintptr_t)ptr;
    for (size_t i = 0; written && i < b->bytes; i++) written = p[i] == b->value;
    log_line("free dev=%d ptr=%llu bytes=%zu written=%d", b->device, ptr, b->bytes, written);
    used_bytes[b->device] -= b->bytes;
    *link = b->next;
    free((void *)(uintptr_t)ptr);
    free(b);
    return CUDA_SUCCESS;
}

static const char *error_name(CUresult e) {
    switch (e) {
    case CUDA_SUCCESS: return "CUDA_SUCCESS";
    case CUDA_ERROR_INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
    case CUDA_ERROR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
    case CUDA_ERROR_NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
    case CUDA_ERROR_NO_DEVICE: return "CUDA_ERROR_NO_DEVICE";
    case CUDA_ERROR_INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
    case CUDA_ERROR_INVALID_CONTEXT: return "CUDA_ERROR_INVALID_CONTEXT";
    default: return NULL;
    }
}

static const char *error_text(CUresult e) {
    switch (e) {
    case CUDA_SUCCESS: return "no error";
    case CUDA_ERROR_INVALID_VALUE: return "invalid argument";
    case CUDA_ERROR_OUT_OF_MEMORY: return "out of memory";
    case CUDA_ERROR_NOT_INITIALIZED: return "initialization error";
    case CUDA_ERROR_NO_DEVICE: return "no CUDA-capable device is detected";
    case CUDA_ERROR_INVALID_DEVICE: return "invalid device ordinal";
    case CUDA_ERROR_INVALID_CONTEXT: return "invalid device context";
    default: return NULL;
    }
}

CUresult cuGetErrorName(CUresult e, const char **out) {
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    *out = error_name(e);
    return *out ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult e, const char **out) {
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    *out = error_text(e);
    return *out ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
