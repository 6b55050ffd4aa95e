# Finds stb (https://github.com/nothings/stb) as Debian's libstb-dev ships it: headers under
# stb/ and one shared library with the implementations. Defines the imported target stb::stb.
find_path(stb_INCLUDE_DIR stb/stb_image.h)
find_library(stb_LIBRARY stb)
mark_as_advanced(stb_INCLUDE_DIR stb_LIBRARY)

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(stb REQUIRED_VARS stb_LIBRARY stb_INCLUDE_DIR)

if(stb_FOUND AND NOT TARGET stb::stb)
  add_library(stb::stb UNKNOWN IMPORTED)
  set_target_properties(stb::stb PROPERTIES
    IMPORTED_LOCATION "${stb_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${stb_INCLUDE_DIR}")
endif()
