# `cmake --install BUILD --prefix P` installs the client library for other
# CMake projects, which then use it as
#   find_package(deltaserve CONFIG REQUIRED)   # with CMAKE_PREFIX_PATH=P
#   target_link_libraries(app PRIVATE deltaserve::client)
# and the deltaserve and deltaserve-cli binaries. tests/consumer builds such
# a project against an install of this tree.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(DELTASERVE_EXPORTED base model proto grpc_proto grpc_status wire client)
foreach(name ${DELTASERVE_EXPORTED})
  set_target_properties(deltaserve_${name} PROPERTIES EXPORT_NAME ${name})
  list(APPEND DELTASERVE_EXPORTED_TARGETS deltaserve_${name})
endforeach()
install(TARGETS ${DELTASERVE_EXPORTED_TARGETS} EXPORT deltaserveTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS deltaserve deltaserve-cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Headers go under the project's prefix, as the build includes them
# ("deltaserve/client/trainer_client.h"), next to the generated ones
# ("deltaserve/v1/trainer.pb.h"): nothing of ours claims a generic name such as
# include/base/.
foreach(dir base model proto client)
  install(DIRECTORY ${DELTASERVE_SOURCE_ROOT}/${dir}/
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/deltaserve/${dir}
    FILES_MATCHING PATTERN "*.h" PATTERN "cli" EXCLUDE PATTERN "examples" EXCLUDE
    PATTERN "python" EXCLUDE)
endforeach()
install(DIRECTORY ${CMAKE_BINARY_DIR}/proto/deltaserve/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/deltaserve
  FILES_MATCHING PATTERN "*.pb.h")

set(config_dir ${CMAKE_INSTALL_LIBDIR}/cmake/deltaserve)
install(EXPORT deltaserveTargets NAMESPACE deltaserve:: DESTINATION ${config_dir})
configure_package_config_file(${DELTASERVE_SOURCE_ROOT}/cmake/deltaserveConfig.cmake.in
  ${CMAKE_BINARY_DIR}/deltaserveConfig.cmake INSTALL_DESTINATION ${config_dir})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/deltaserveConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/deltaserveConfig.cmake
  ${CMAKE_BINARY_DIR}/deltaserveConfigVersion.cmake DESTINATION ${config_dir})
