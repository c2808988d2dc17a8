#include "moetron/io/input_files.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include "moetron/core/error.hpp"

namespace moetron {

std::vector<std::string> files_in_directory(const std::string& dir) {
  std::vector<std::string> files;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return files;
  while (const dirent* e = readdir(d)) {
    const std::string path = dir + "/" + e->d_name;
    struct stat st {};
    if (stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) files.push_back(path);
  }
  closedir(d);
  return files;
}

void check_output_not_input(const std::string& out, const std::vector<std::string>& inputs) {
  struct stat o {};
  if (stat(out.c_str(), &o) != 0) return;  // a new file cannot be an input
  for (const std::string& in : inputs) {
    struct stat i {};
    if (stat(in.c_str(), &i) == 0 && i.st_dev == o.st_dev && i.st_ino == o.st_ino)
      MOETRON_FAIL("--out " << out << " is the run's input " << in
                            << ": writing the results would destroy it; choose another path");
  }
}

}  // namespace moetron
