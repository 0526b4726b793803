# deltaserve_add_library(NAME SOURCES... [PUBLIC deps...] [PRIVATE deps...])
#
# A static library deltaserve_NAME with the alias deltaserve::NAME, whose
# headers are included from the repository root ("model/mlp.h"). Every
# component library is declared this way, so they all agree on include paths
# and on what an install exports (see cmake/deltaserve_install.cmake).
function(deltaserve_add_library name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "" "SOURCES;PUBLIC;PRIVATE")
  set(target deltaserve_${name})
  add_library(${target} STATIC ${ARG_SOURCES})
  add_library(deltaserve::${name} ALIAS ${target})
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${DELTASERVE_SOURCE_ROOT}>
    $<INSTALL_INTERFACE:include>)
  target_link_libraries(${target} PUBLIC ${ARG_PUBLIC} PRIVATE ${ARG_PRIVATE})
endfunction()
