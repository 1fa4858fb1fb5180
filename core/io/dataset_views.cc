#include "io/dataset_views.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "io/camera_io.h"
#include "io/png_io.h"

namespace flexgs {

namespace fs = std::filesystem;

absl::StatusOr<DatasetCameras> SplitDatasetCameras(const std::string& cameras_path) {
  absl::StatusOr<std::vector<Camera>> cams = LoadCameras(cameras_path);
  if (!cams.ok()) return cams.status();
  if (cams->empty()) return absl::InvalidArgumentError(absl::StrCat("no cameras in ", cameras_path));
  std::stable_sort(cams->begin(), cams->end(), [](const Camera& a, const Camera& b) { return a.name < b.name; });
  DatasetCameras split;
  for (size_t i = 0; i < cams->size(); ++i) {
    (i % kLlffHold == 0 ? split.test : split.train).push_back((*cams)[i]);
  }
  return split;
}

absl::StatusOr<std::string> FindDatasetImage(const std::string& dir, const std::string& camera_name) {
  const fs::path base(dir);
  std::vector<fs::path> tried = {base / camera_name};
  fs::path stem = base / camera_name;
  stem.replace_extension();
  for (const char* ext : {".png", ".PNG"}) tried.push_back(fs::path(stem.string() + ext));
  for (const fs::path& p : tried) {
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) continue;
    std::string ext = p.extension().string();
    for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (ext != ".png") continue;  // a JPEG next to it: keep looking for a PNG
    return p.string();
  }
  std::vector<std::string> names;
  for (const fs::path& p : tried) names.push_back(p.string());
  return absl::NotFoundError(absl::StrCat("no PNG image for camera '", camera_name, "' (tried ",
                                          absl::StrJoin(names, ", "), "; only PNG images are supported)"));
}

absl::StatusOr<std::vector<DatasetView>> LoadDatasetViews(const std::string& images_dir,
                                                          const std::vector<Camera>& cameras,
                                                          const std::array<float, 3>& background, int width,
                                                          int height) {
  if (cameras.empty()) return absl::InvalidArgumentError("no cameras to load images for");
  if (width < 0 || height < 0 || (width > 0) != (height > 0)) {
    return absl::InvalidArgumentError(absl::StrFormat("image size %dx%d: give both or neither", width, height));
  }
  std::error_code ec;
  if (!fs::is_directory(images_dir, ec)) {
    return absl::NotFoundError(absl::StrCat("images folder '", images_dir, "' does not exist or is not a folder"));
  }
  std::vector<DatasetView> views;
  views.reserve(cameras.size());
  for (const Camera& cam : cameras) {
    absl::StatusOr<std::string> file = FindDatasetImage(images_dir, cam.name);
    if (!file.ok()) return file.status();
    absl::StatusOr<Image> image = ReadPng(*file);
    if (!image.ok()) return image.status();
    Image rgb = ToRgbOver(*image, background);
    const double cam_aspect = static_cast<double>(cam.width) / cam.height;
    const double img_aspect = static_cast<double>(rgb.width) / rgb.height;
    if (std::abs(img_aspect / cam_aspect - 1.0) > 0.01) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "image %s is %dx%d but camera '%s' is %dx%d: the aspect ratios differ (wrong image or camera file?)", *file,
          rgb.width, rgb.height, cam.name, cam.width, cam.height));
    }
    if (width > 0) rgb = ResizeArea(rgb, width, height);
    DatasetView v;
    v.camera = cam.Resized(rgb.width, rgb.height);
    v.image = std::move(rgb);
    views.push_back(std::move(v));
  }
  return views;
}

}  // namespace flexgs
