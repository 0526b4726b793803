// The consumer's own base/status_macros.h: a project that uses deltaserve may
// have folders and macros with generic names. deltaserve's installed headers
// must neither be found in its place nor define its macros.
#ifndef CONSUMER_BASE_STATUS_MACROS_H_
#define CONSUMER_BASE_STATUS_MACROS_H_

#define CONSUMER_OWN_BASE_STATUS_MACROS 1

// The consumer's RETURN_IF_ERROR, unrelated to deltaserve's: it returns an int.
#define RETURN_IF_ERROR(expr) \
  do {                        \
    if (!(expr)) return 1;    \
  } while (false)

#endif  // CONSUMER_BASE_STATUS_MACROS_H_
