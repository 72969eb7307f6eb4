/* reall_oc (the header's realloc) of an already freed pointer: the diagnosis names reall_oc.
 * (looked up with dlsym: the preloaded build is not linked with the library.)
 * EXPECT: my_alloc: reall_oc(): double free of */
#include "misuse.h"
#include "my_alloc.h"

int main(void) {
    __typeof__(reall_oc) *f_reall_oc = (__typeof__(reall_oc) *)dlsym(RTLD_DEFAULT, "reall_oc");
    if (!f_reall_oc) return 1;
    busy_heap();
    char *a = malloc(300), *b = malloc(300);
    memset(a, 'a', 300);
    memset(b, 'b', 300);
    char *volatile p = a;
    free(p);
    char *q = f_reall_oc(p, 600); /* the misuse */
    free(q);
    free(b);
    return 0; /* not reached */
}
