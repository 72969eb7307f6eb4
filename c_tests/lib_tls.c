/* A shared library with thread-local storage (initialised and zeroed, large enough to need a
 * dynamic TLS block), loaded and unloaded with dlopen by dlopen_tls.c. Touching its TLS from a
 * thread makes glibc's __tls_get_addr allocate that thread's block (and grow its DTV) with
 * malloc: the allocator must not recurse into TLS of its own there. */
#include <stdlib.h>
#include <string.h>

__thread char tls_buffer[16384] = {1};
__thread unsigned long tls_counter;

unsigned long tls_touch(unsigned long v) {
    tls_counter += v;
    tls_buffer[tls_counter % sizeof tls_buffer] = (char)v;
    char *p = malloc(64 + v % 512); /* allocate while inside the library too */
    if (p) {
        memset(p, (int)v, 64);
        free(p);
    }
    return tls_counter + (unsigned char)tls_buffer[0];
}
