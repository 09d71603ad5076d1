# Installation layout and the Debian package (CPack). Included at the end of the top-level
# CMakeLists.txt. `cpack -G DEB` in the build folder writes cytosae-explorer_<version>_<arch>.deb;
# its dependencies are the distribution's packages (LibTorch, Qt 6, OpenCV, SQLite), not bundled.

include(GNUInstallDirs)

# `cmake --install` and cpack install what is built; they do not first build every test and
# benchmark (build the binaries first: cmake --build build).
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

set(_pkg ${CMAKE_CURRENT_LIST_DIR})
set(_res ${PROJECT_SOURCE_DIR}/resources)
set(_doc ${CMAKE_INSTALL_DATADIR}/doc/cytosae-explorer) # Debian: /usr/share/doc/<package>

# The demo model, found by `cytosae demo` next to the installed binary (../share/cytosae/models/demo).
install(FILES ${PROJECT_SOURCE_DIR}/models/demo/demo_vit.pth ${PROJECT_SOURCE_DIR}/models/demo/demo_sae.pt
              ${PROJECT_SOURCE_DIR}/models/demo/model_card.json
        DESTINATION ${CMAKE_INSTALL_DATADIR}/cytosae/models/demo)

# Man pages, compressed as Debian wants them (gzip -9n: no name or time stamp, reproducible).
foreach(_page cytosae cytosae-explorer)
    set(_man ${CMAKE_CURRENT_BINARY_DIR}/${_page}.1.gz)
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_pkg}/${_page}.1)
    execute_process(COMMAND gzip -9n -c ${_pkg}/${_page}.1 OUTPUT_FILE ${_man} RESULT_VARIABLE _gz)
    if(NOT _gz EQUAL 0)
        message(FATAL_ERROR "gzip of the man page ${_page}.1 failed")
    endif()
    if(_page STREQUAL "cytosae" OR CYTOSAE_BUILD_GUI)
        install(FILES ${_man} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
    endif()
endforeach()

# Desktop integration: launcher, icon, and the project file type (*.cyto) opened by the explorer.
if(CYTOSAE_BUILD_GUI)
    install(FILES ${_res}/cytosae-explorer.desktop DESTINATION ${CMAKE_INSTALL_DATADIR}/applications)
    install(FILES ${_res}/cytosae-explorer.svg DESTINATION ${CMAKE_INSTALL_DATADIR}/icons/hicolor/scalable/apps)
    install(FILES ${_res}/cytosae-explorer.svg DESTINATION ${CMAKE_INSTALL_DATADIR}/icons/hicolor/scalable/mimetypes
            RENAME application-x-cytosae-project.svg)
    install(FILES ${_res}/cytosae-explorer-mime.xml DESTINATION ${CMAKE_INSTALL_DATADIR}/mime/packages
            RENAME cytosae-explorer.xml)
endif()

# Documentation and the cluster scripts (as examples to copy).
install(FILES ${_pkg}/copyright DESTINATION ${_doc})
install(FILES ${PROJECT_SOURCE_DIR}/docs/database.md ${PROJECT_SOURCE_DIR}/docs/install-cluster-gpu.md
        DESTINATION ${_doc})
install(PROGRAMS ${_pkg}/slurm/cytosae-shards.sbatch ${_pkg}/slurm/cytosae-merge.sbatch
                 ${_pkg}/slurm/submit-sharded-run.sh
        DESTINATION ${_doc}/examples/slurm)
install(FILES ${_pkg}/slurm/README.md DESTINATION ${_doc}/examples/slurm)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME cytosae-explorer)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "CytoSAE Explorer")
set(CPACK_PACKAGE_CONTACT "CytoSAE Explorer maintainers <maintainers@cytosae.invalid>" CACHE STRING
    "Maintainer field of the .deb")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "concept explorer for blood-cell foundation models")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "Runs a DINOv2 vision transformer (DinoBloom-B) and the CytoSAE sparse autoencoder on\n"
    "blood-cell images natively with LibTorch, stores every concept activation in a project\n"
    "database, and shows which morphological concepts fire where: per-patch overlays, the\n"
    "cells that carry a concept, patients against their cohort. Includes the cytosae command\n"
    "(import, run, sharded runs on a cluster, merge, statistics, export) and a small demo model.")
string(REPLACE ";" "" CPACK_DEBIAN_PACKAGE_DESCRIPTION "${CPACK_DEBIAN_PACKAGE_DESCRIPTION}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_STRIP_FILES ON)
# Libraries the binaries link come from dpkg-shlibdeps (dpkg-dev) when present; the list below
# is the same for Debian 12 written out, for builds without it. Loaded at run time, so added
# by hand: the OpenMP OpenBLAS (about 20x faster than the reference BLAS) and Qt's platform plugins.
find_program(CYTOSAE_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(CYTOSAE_DPKG_SHLIBDEPS)
    set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
    set(CPACK_DEBIAN_PACKAGE_DEPENDS "libopenblas0-openmp | libopenblas0")
else()
    set(CPACK_DEBIAN_PACKAGE_DEPENDS "libtorch1.13, libopencv-core406, libopencv-imgproc406, libopencv-imgcodecs406, \
libsqlite3-0, libstdc++6, libopenblas0-openmp | libopenblas0")
    if(CYTOSAE_BUILD_GUI)
        string(APPEND CPACK_DEBIAN_PACKAGE_DEPENDS ", libqt6core6, libqt6gui6, libqt6widgets6, libqt6concurrent6, \
libqt6printsupport6, libqcustomplot2.1-qt6")
    endif()
endif()
if(CYTOSAE_BUILD_GUI)
    string(APPEND CPACK_DEBIAN_PACKAGE_DEPENDS ", qt6-qpa-plugins")
endif()
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "shared-mime-info, desktop-file-utils, hicolor-icon-theme")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "slurm-client")
include(CPack)
