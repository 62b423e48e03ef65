# libens, the inference library (include/ens/infer.h), shared and static, and
# what `cmake --install` puts in place for programs built against it: the
# libraries, the public headers, ens.pc (pkg-config) and ensConfig.cmake
# (find_package(ens) gives the targets ens::ens and ens::ens_static).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

add_library(libens_shared SHARED $<TARGET_OBJECTS:ensinfer>)
add_library(libens_static STATIC $<TARGET_OBJECTS:ensinfer>)
foreach(t libens_shared libens_static)
  set_target_properties(${t} PROPERTIES OUTPUT_NAME ens EXPORT_NAME ${t})
  target_include_directories(${t} PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
endforeach()
set_target_properties(libens_shared PROPERTIES EXPORT_NAME ens VERSION ${PROJECT_VERSION}
  SOVERSION ${PROJECT_VERSION_MAJOR})
set_target_properties(libens_static PROPERTIES EXPORT_NAME ens_static)
# The shared library carries its dependencies; a static link needs them named.
target_link_libraries(libens_shared PRIVATE ${HDF5_C_LIBRARIES} PkgConfig::OPENBLAS
  PkgConfig::LAPACKE PkgConfig::INIH ZLIB::ZLIB m)
target_link_options(libens_shared PRIVATE -Wl,--no-undefined)
target_link_libraries(libens_static INTERFACE
  "$<BUILD_INTERFACE:${HDF5_C_LIBRARIES};PkgConfig::OPENBLAS;PkgConfig::LAPACKE;PkgConfig::INIH;ZLIB::ZLIB;m>"
  "$<INSTALL_INTERFACE:${HDF5_C_LIBRARIES};${OPENBLAS_LINK_LIBRARIES};${LAPACKE_LINK_LIBRARIES};${INIH_LINK_LIBRARIES};z;m;pthread>")

install(TARGETS libens_shared libens_static EXPORT ensTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES include/ens/infer.h include/ens/error.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ens)
install(EXPORT ensTargets NAMESPACE ens:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ens)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/ensConfig.cmake.in
  ${PROJECT_BINARY_DIR}/ensConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ens)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ensConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ensConfig.cmake ${PROJECT_BINARY_DIR}/ensConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ens)
configure_file(${PROJECT_SOURCE_DIR}/cmake/ens.pc.in ${PROJECT_BINARY_DIR}/ens.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/ens.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
# The Python module finds the installed libens from <prefix>/share/ens/python.
install(FILES ${PROJECT_SOURCE_DIR}/python/ens.py DESTINATION ${CMAKE_INSTALL_DATADIR}/ens/python)
install(PROGRAMS ${PROJECT_SOURCE_DIR}/scripts/export_torch.py
  DESTINATION ${CMAKE_INSTALL_DATADIR}/ens/scripts)
