#include "RandomModels.h"
#include "model/Engine.h"
#include "model/Preprocess.h"
#include "model/VitModel.h"
#include <torch/torch.h>
#include <chrono>
using namespace cytosae; using namespace cytosae::model;
double since(std::chrono::steady_clock::time_point a){return std::chrono::duration<double>(std::chrono::steady_clock::now()-a).count();}
int main(){
  torch::manual_seed(0); at::set_num_threads(2); c10::InferenceMode g;
  auto vit = VitModel::fromStateDict(bench::randomVitB(), 0);
  at::Tensor px = torch::randn({8,3,224,224});
  vit->prepareBf16(true);
  for (bool bf : {false, true}) {
    at::Tensor t = vit->embed(px); vit->blocks(t,0,10,bf);
    auto t0=std::chrono::steady_clock::now(); at::Tensor r = vit->blocks(t,0,10,bf); double s=since(t0);
    printf("vit %s: %.3f s, %.1f GFLOP/s\n", bf?"bf16":"fp32", s, 2*vit->macsThrough(10,257)*8/s/1e9);
  }
  // one block pieces in bf16
  at::Tensor x = torch::randn({8,257,768});
  at::Tensor xh = x.to(at::kBFloat16);
  auto tm=[&](const char*n, auto f){ f(); auto t0=std::chrono::steady_clock::now(); for(int i=0;i<5;i++) f(); printf("%-30s %.2f ms\n", n, since(t0)/5*1000);};
  at::Tensor w = torch::randn({2304,768}).to(at::kBFloat16), wb=torch::randn({2304}).to(at::kBFloat16);
  at::Tensor w1 = torch::randn({3072,768}).to(at::kBFloat16), b1=torch::randn({3072}).to(at::kBFloat16);
  at::Tensor w2 = torch::randn({768,3072}).to(at::kBFloat16), b2=torch::randn({768}).to(at::kBFloat16);
  at::Tensor ln = torch::ones({768});
  tm("layernorm fp32", [&]{ torch::layer_norm(x,{768},ln,ln,1e-6);});
  tm("to bf16", [&]{ x.to(at::kBFloat16);});
  tm("linear qkv bf16", [&]{ torch::linear(xh,w,wb);});
  at::Tensor qkv = torch::linear(xh,w,wb).reshape({8,257,3,12,64}).permute({2,0,3,1,4});
  tm("q*scale", [&]{ qkv[0]*0.125;});
  at::Tensor q = qkv[0]*0.125;
  tm("qk matmul", [&]{ torch::matmul(q, qkv[1].transpose(-2,-1));});
  at::Tensor att = torch::matmul(q, qkv[1].transpose(-2,-1));
  tm("softmax bf16", [&]{ att.softmax(-1);});
  tm("softmax fp32", [&]{ att.to(at::kFloat).softmax(-1);});
  at::Tensor p = att.softmax(-1);
  tm("av matmul", [&]{ torch::matmul(p, qkv[2]);});
  tm("fc1 bf16", [&]{ torch::linear(xh,w1,b1);});
  at::Tensor h = torch::linear(xh,w1,b1);
  tm("gelu bf16", [&]{ torch::gelu(h);});
  tm("gelu fp32", [&]{ torch::gelu(h.to(at::kFloat));});
  tm("fc2 bf16", [&]{ torch::linear(h,w2,b2);});
  at::Tensor c = torch::randn({2056,768}).to(at::kBFloat16), we = torch::randn({768,49152}).to(at::kBFloat16);
  tm("sae mm chunk 4096", [&]{ torch::mm(c, we.narrow(1,0,4096)).contiguous();});
  tm("sae mm chunk 4096 contiguous w", [&]{ torch::mm(c, we.narrow(1,0,4096).contiguous());});
  at::Tensor wt = torch::randn({49152,768}).to(at::kBFloat16);
  tm("sae mm chunk 4096 via linear(W^T)", [&]{ torch::linear(c, wt.narrow(0,0,4096));});
}
