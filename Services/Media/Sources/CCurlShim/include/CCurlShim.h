// Typed, non-variadic wrappers for the libcurl calls Swift cannot import
// (`curl_easy_setopt` and `curl_easy_getinfo` are C variadics). Nothing else lives here.

#ifndef AIIM_CCURL_SHIM_H
#define AIIM_CCURL_SHIM_H

#include <curl/curl.h>

/// The write/read/header callback shape, spelled out so Swift sees a concrete function-pointer type.
typedef size_t (*aiim_curl_data_callback)(char *buffer, size_t size, size_t nitems, void *userdata);

CURLcode aiim_curl_setopt_long(CURL *handle, CURLoption option, long value);
CURLcode aiim_curl_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value);
CURLcode aiim_curl_setopt_string(CURL *handle, CURLoption option, const char *value);
CURLcode aiim_curl_setopt_pointer(CURL *handle, CURLoption option, void *value);
CURLcode aiim_curl_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value);

/// CURLOPT_WRITEFUNCTION + CURLOPT_WRITEDATA.
CURLcode aiim_curl_set_write_callback(CURL *handle, aiim_curl_data_callback callback, void *userdata);
/// CURLOPT_READFUNCTION + CURLOPT_READDATA.
CURLcode aiim_curl_set_read_callback(CURL *handle, aiim_curl_data_callback callback, void *userdata);
/// CURLOPT_HEADERFUNCTION + CURLOPT_HEADERDATA.
CURLcode aiim_curl_set_header_callback(CURL *handle, aiim_curl_data_callback callback, void *userdata);

CURLcode aiim_curl_getinfo_long(CURL *handle, CURLINFO info, long *value);
CURLcode aiim_curl_getinfo_off_t(CURL *handle, CURLINFO info, curl_off_t *value);

#endif
