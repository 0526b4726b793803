# deltaserve_add_library(NAME SOURCES... [PUBLIC deps...] [PRIVATE deps...])
#
# A static library deltaserve_NAME with the alias deltaserve::NAME, whose
# headers are included with the project's prefix, as they are installed:
# "deltaserve/model/mlp.h". Every component library is declared this way, so
# they all agree on include paths and on what an install exports (see
# cmake/deltaserve_install.cmake).
#
# The build sees the source folders through links in
# DELTASERVE_INCLUDE_ROOT/deltaserve/ (made at configure time), and only that
# root is on the include path: no folder of ours claims a generic name such as
# base/ or model/, in the build or in an install. Needs DELTASERVE_SOURCE_ROOT.
set(DELTASERVE_INCLUDE_ROOT ${CMAKE_BINARY_DIR}/include)
file(MAKE_DIRECTORY ${DELTASERVE_INCLUDE_ROOT}/deltaserve)
foreach(dir base bench client model proto server sim tests)
  file(CREATE_LINK ${DELTASERVE_SOURCE_ROOT}/${dir} ${DELTASERVE_INCLUDE_ROOT}/deltaserve/${dir}
    SYMBOLIC)
endforeach()

function(deltaserve_add_library name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "" "SOURCES;PUBLIC;PRIVATE")
  set(target deltaserve_${name})
  add_library(${target} STATIC ${ARG_SOURCES})
  add_library(deltaserve::${name} ALIAS ${target})
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${DELTASERVE_INCLUDE_ROOT}>
    $<INSTALL_INTERFACE:include>)
  target_link_libraries(${target} PUBLIC ${ARG_PUBLIC} PRIVATE ${ARG_PRIVATE})
endfunction()
