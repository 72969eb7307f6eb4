/* larson_sized: larson.c compiled as C++, allocating with operator new and freeing with the
 * sized operator delete of C++14 (g++ -fsized-deallocation): mimalloc-bench's "larson-sized".
 *
 *   larson_sized [threads] [generations] [ops_per_generation] [slots] [min_size] [max_size]
 *
 * An allocator that provides the sized delete can use the size it is given instead of looking
 * the block up; one that does not gets the call through libstdc++, which forwards it to free().
 * Same work, same arguments and same checksum as larson.
 */
#include <new>

#define LARSON_ALLOC(n) static_cast<unsigned char *>(::operator new(n))
#define LARSON_FREE(p, n) ::operator delete((p), (n))

#include "larson.c"
