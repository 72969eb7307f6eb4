/* Double free through the header's own name freee: the diagnosis names the function called.
 * (freee is looked up with dlsym: the preloaded build is not linked with the library.)
 * EXPECT: my_alloc: freee(): double free of */
#include "misuse.h"
#include "my_alloc.h"

int main(void) {
    __typeof__(freee) *f_freee = (__typeof__(freee) *)dlsym(RTLD_DEFAULT, "freee");
    if (!f_freee) return 1;
    busy_heap();
    char *a = malloc(64), *b = malloc(64);
    memset(a, 'a', 64);
    memset(b, 'b', 64);
    char *volatile p = a;
    f_freee(p);
    f_freee(p); /* the misuse */
    f_freee(b);
    return 0; /* not reached */
}
