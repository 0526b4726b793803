# deltaserve_metrics: the trainer's Prometheus metrics (server/metrics.h).
# Included from server/CMakeLists.txt (deltaserve_server links it).
add_library(deltaserve_metrics STATIC ${CMAKE_CURRENT_LIST_DIR}/metrics.cc)
add_library(deltaserve::metrics ALIAS deltaserve_metrics)
target_include_directories(deltaserve_metrics PUBLIC ${DELTASERVE_SOURCE_ROOT})
target_link_libraries(deltaserve_metrics
  PUBLIC absl::status absl::statusor absl::strings absl::synchronization
  PRIVATE prometheus-cpp::core prometheus-cpp::pull)
