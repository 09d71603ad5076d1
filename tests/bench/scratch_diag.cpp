#include "RandomModels.h"
#include "model/Engine.h"
#include "model/Preprocess.h"
#include "model/VitModel.h"
#include <torch/torch.h>
#include <random>
#include <map>
using namespace cytosae; using namespace cytosae::model;
std::vector<std::vector<uint8_t>> makeCells(int n, uint32_t seed){
    std::mt19937 rng(seed); std::vector<std::vector<uint8_t>> cells;
    for (int i = 0; i < n; ++i) { std::vector<uint8_t> rgb(288 * 288 * 3);
        const int cx = 100 + int(rng() % 88), cy = 100 + int(rng() % 88), r = 50 + int(rng() % 40);
        for (int y = 0; y < 288; ++y) for (int x = 0; x < 288; ++x) { const bool in = (x - cx) * (x - cx) + (y - cy) * (y - cy) < r * r; const int noise = int(rng() % 16);
                uint8_t *p = &rgb[size_t(y * 288 + x) * 3]; p[0] = uint8_t(in ? 110 + noise : 215 + noise); p[1] = uint8_t(in ? 60 + noise : 170 + noise); p[2] = uint8_t(in ? 150 + noise : 200 + noise); }
        cells.push_back(std::move(rgb)); }
    return cells; }
std::vector<float> prep(const std::vector<std::vector<uint8_t>> &cells){ std::vector<float> chw(cells.size()*3*224*224);
  for (size_t i=0;i<cells.size();++i) preprocessToChw({cells[i].data(),288,288},224,{},chw.data()+i*3*224*224); return chw;}
int main(){
  torch::manual_seed(0); at::set_num_threads(2);
  auto vit = VitModel::fromStateDict(bench::randomVitB(), 0);
  auto cal = prep(makeCells(8,99));
  auto rs = bench::calibratedRandomSae(*vit, torch::from_blob(cal.data(),{8,3,224,224}), 10);
  auto sae = SaeModel::fromTensors(rs.wEnc, rs.bEnc, rs.wDec, rs.bDec); sae->info().blockLayer=-2;
  auto chw = prep(makeCells(8,1));
  EngineParams p; p.device=DeviceChoice::Cpu; p.topK=256; p.clsEmbedding=false;
  auto e1 = makeEngine(*vit,*sae,p); p.precision=Precision::Bf16; auto e2 = makeEngine(*vit,*sae,p);
  auto a = (*e1)->runPreprocessed(chw.data(),8,224,224), b=(*e2)->runPreprocessed(chw.data(),8,224,224);
  std::map<int,int> hist; double sumBad=0; int nb=0;
  for (int i=0;i<8;i++){ auto &A=(*a)[i], &B=(*b)[i];
    for (int t=0;t<A.numTokens;t++){ std::vector<ImageActivations> x{A}, y{B};
      std::vector<int> sa, sb; int nact=0; float top=0, v32=0;
      for (int j=0;j<256;j++){ if(A.topIds[t*256+j]>=0){nact++;} }
      top=A.topValues[t*256]; v32 = A.topValues[t*256+31];
      for (int j=0;j<32;j++){ if(A.topIds[t*256+j]>=0) sa.push_back(A.topIds[t*256+j]); if(B.topIds[t*256+j]>=0) sb.push_back(B.topIds[t*256+j]); }
      std::sort(sa.begin(),sa.end()); std::sort(sb.begin(),sb.end()); std::vector<int> c; std::set_intersection(sa.begin(),sa.end(),sb.begin(),sb.end(),std::back_inserter(c));
      double ov = std::max(sa.size(),sb.size()) ? double(c.size())/std::max(sa.size(),sb.size()) : 1;
      hist[int(ov*10)]++;
      if (ov < 0.9 && nb < 12) { nb++; printf("tok %d/%d ov %.2f nact %d top %.4f v32 %.5f sizes %zu %zu\n", i,t,ov,nact,top,v32,sa.size(),sb.size()); }
    }}
  for (auto [k,v]: hist) printf("overlap %.1f: %d tokens\n", k/10.0, v);
}
