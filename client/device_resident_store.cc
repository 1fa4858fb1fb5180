#include "client/device_resident_store.h"

#include <utility>

#include "spdlog/spdlog.h"

namespace flexgs::client {

absl::StatusOr<std::unique_ptr<DeviceResidentStore>> DeviceResidentStore::Create() {
  auto store = NewDeviceGaussianStore();
  if (!store.ok()) return store.status();
  return std::unique_ptr<DeviceResidentStore>(new DeviceResidentStore(*std::move(store)));
}

GaussianCloud DeviceResidentStore::ToHost() const {
  auto cloud = store_->Download();
  if (!cloud.ok()) {
    spdlog::error("copying the device-resident Gaussians to the host failed: {}",
                  std::string(cloud.status().message()));
    return GaussianCloud{};
  }
  return *std::move(cloud);
}

}  // namespace flexgs::client
