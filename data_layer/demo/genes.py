"""Gene catalogue of the demo: real gene symbols, their descriptions and the cell types that express them.

Each marker gene carries rules ``tag:level``: a cell-type group whose tags include ``tag`` expresses the
gene at ``level`` (expected counts per cell in a MERSCOPE-like panel, before the cell's size factor).
Groups not named by any rule get the gene's background level. Identifiers (Ensembl, NCBI Gene) are
synthetic but stable and in the release's formats (``ENSG00000xxxxxx``, ``ENSMMUG00000xxxxxx``,
``NCBIGene:1003xxxxx`` for marmoset): derived from the symbol, so the same symbol has the same id in every
species file that uses the same id space.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from .util import stable_int

# symbol | description | rules (tag:level, comma separated)
_MARKERS = """
SNAP25|synaptosome associated protein 25|neuron:6
SYT1|synaptotagmin 1|neuron:5
RBFOX3|RNA binding fox-1 homolog 3|neuron:3
STMN2|stathmin 2|neuron:4
CELF4|CUGBP Elav-like family member 4|neuron:2.5
GAD1|glutamate decarboxylase 1|gaba:6,ob_dopa:4
GAD2|glutamate decarboxylase 2|gaba:6,gad2dopa:3
SLC32A1|solute carrier family 32 member 1|gaba:3
SLC17A7|solute carrier family 17 member 7|ctx_glut:8,skor1:1
SLC17A6|solute carrier family 17 member 6|th_glut:7,sth:7,vtr_glut:5,skor1:4,gpi_shell:2.5,ctx_glut:0.3
SATB2|SATB homeobox 2|ctx_glut:4
NEUROD6|neuronal differentiation 6|ctx_glut:3
TBR1|T-box brain transcription factor 1|ctx_glut:3,gpi_shell:3
CUX2|cut like homeobox 2|ctx_glut:2
RORB|RAR related orphan receptor B|ctx_glut:2,th_glut:2
FEZF2|FEZ family zinc finger 2|ctx_glut:1.5
TLE4|TLE family member 4, transcriptional corepressor|ctx_glut:1.5
PPP1R1B|protein phosphatase 1 regulatory inhibitor subunit 1B|msn:8,icj:3
BCL11B|BAF chromatin remodeling complex subunit BCL11B|msn:4,ctx_glut:1.5
FOXP1|forkhead box P1|msn:4,ctx_glut:1
RGS9|regulator of G protein signaling 9|msn:4
GPR88|G protein-coupled receptor 88|msn:4,icj:2
PDE10A|phosphodiesterase 10A|msn:6,icj:2
PDE1B|phosphodiesterase 1B|msn:4
DRD1|dopamine receptor D1|d1:12,d1d2:3,icj:5,amy_d1:3
TAC1|tachykinin precursor 1|d1:6,d1d2:4,icj:3
PDYN|prodynorphin|d1:5,strio:2
ISL1|ISL LIM homeobox 1|d1:2,chat:3
EBF1|EBF transcription factor 1|d1:2,vlmc:2
CHRM4|cholinergic receptor muscarinic 4|d1:2
DRD2|dopamine receptor D2|d2:5,d1d2:2.5,dopa:3,chat:2
PENK|proenkephalin|d2:10,d1d2:5,strv:2
ADORA2A|adenosine A2a receptor|d2:4
GPR6|G protein-coupled receptor 6|d2:3
SIX3|SIX homeobox 3|d2:1.5
DRD3|dopamine receptor D3|strv:3,icj:6
OPRM1|opioid receptor mu 1|strio:3
KCNIP1|potassium voltage-gated channel interacting protein 1|strio:3
SEMA5B|semaphorin 5B|strio:2.5
CALB1|calbindin 1|matrix:2.5,calb1dopa:4,cx_gaba:1
EPHA4|EPH receptor A4|matrix:2
RXFP1|relaxin family peptide receptor 1|nudap:5
STXBP6|syntaxin binding protein 6|d1d2:3
CASZ1|castor zinc finger 1|d1d2:2.5
OTOF|otoferlin|d1d2:2
SST|somatostatin|sst:10,gpi_shell:4
NPY|neuropeptide Y|sst:7
NOS1|nitric oxide synthase 1|sst:4
CHODL|chondrolectin|chodl:4
PVALB|parvalbumin|pvalb:8,gpe_proto:4,gpi_core:6,sth:3,sn_pvalb:5
PTHLH|parathyroid hormone like hormone|pthlh:4
KIT|KIT proto-oncogene, receptor tyrosine kinase|pvalb:2
CHAT|choline O-acetyltransferase|chat:5
SLC5A7|solute carrier family 5 member 7|chat:4
SLC18A3|solute carrier family 18 member A3|chat:3
SLC10A4|solute carrier family 10 member 4|chat:2.5
TH|tyrosine hydroxylase|dopa:12,tac3:3,ob_dopa:6
SLC6A3|solute carrier family 6 member 3|dopa:9
DDC|dopa decarboxylase|dopa:6,ob_dopa:2
SLC18A2|solute carrier family 18 member A2|dopa:5
KCNJ6|potassium inwardly rectifying channel subfamily J member 6|sox6dopa:4
ALDH1A1|aldehyde dehydrogenase 1 family member A1|sox6dopa:4,astro:1
NR4A2|nuclear receptor subfamily 4 group A member 2|dopa:3
FOXA2|forkhead box A2|dopa:2
EN1|engrailed homeobox 1|dopa:2
TAC3|tachykinin precursor 3|tac3:6
PLPP4|phospholipid phosphatase 4|tac3:3
LHX6|LIM homeobox 6|lhx6:4
LHX8|LIM homeobox 8|lhx8:4,chat:2
GBX1|gastrulation brain homeobox 1|gbx1:3
SOX6|SRY-box transcription factor 6|sox6:4,sox6dopa:3,lhx6:1
MEIS2|Meis homeobox 2|meis2:4,msn:1
CTXND1|cortexin domain containing 1|ctxnd1:4
FOXP2|forkhead box P2|meis2:3,msn:1.5
NPAS1|neuronal PAS domain protein 1|meis2:2
NKX2-1|NK2 homeobox 1|lhx6:2,gpe_proto:3
ARX|aristaless related homeobox|gpe_proto:1.5
PAX6|paired box 6|gpi_shell:3
PITX2|paired like homeodomain 2|sth:5
BARHL1|BarH like homeobox 1|sth:3
GATA3|GATA binding protein 3|gata3:5
PAX8|paired box 8|pax8:4
TCF7L2|transcription factor 7 like 2|tcf7l2:4,th_glut:5
SEMA5A|semaphorin 5A|sema5a:4
EBF2|EBF transcription factor 2|ebf2:4
PAX7|paired box 7|ebf2:2
OTX2|orthodenticle homeobox 2|ebf2:1.5
ONECUT1|one cut homeobox 1|onecut1:3
ONECUT2|one cut homeobox 2|onecut1:2
RSPO2|R-spondin 2|rspo2:4
LYPD6|LY6/PLAUR domain containing 6|lypd6:3
ADARB2|adenosine deaminase RNA specific B2 (inactive)|adarb2:3,cge:2
LAMP5|lysosomal associated membrane protein family member 5|lamp5:5
CXCL14|C-X-C motif chemokine ligand 14|cxcl14:4
VIP|vasoactive intestinal peptide|vip:8
CCK|cholecystokinin|vip:2,ctx_glut:2
CALB2|calbindin 2|vip:2,cx_gaba:1
SKOR1|SKI family transcriptional corepressor 1|skor1:4
FRMD7|FERM domain containing 7|frmd7:4
PROX1|prospero homeobox 1|th_glut:2,cge:1
LHX2|LIM homeobox 2|th_glut:2
GBX2|gastrulation brain homeobox 2|th_glut:1.5
ZIC1|Zic family member 1|ls_gaba:3,vlmc:1
TRH|thyrotropin releasing hormone|zi:2
OTP|orthopedia homeobox|vtr_glut:3
SIM1|SIM bHLH transcription factor 1|vtr_glut:2
CARTPT|CART prepropeptide|vtr_glut:2,strv:0.5
NTS|neurotensin|zi:2,ctx_glut:0.5
CRH|corticotropin releasing hormone|amy:2
GAL|galanin|amy:2
PNOC|prepronociceptin|amy:2,msn:0.5
AQP4|aquaporin 4|astro:8,epen:2
GFAP|glial fibrillary acidic protein|astro:6,imastro:3
SLC1A3|solute carrier family 1 member 3|astro:8
SLC1A2|solute carrier family 1 member 2|astro:7
ALDH1L1|aldehyde dehydrogenase 1 family member L1|astro:4
GJA1|gap junction protein alpha 1|astro:5
SOX9|SRY-box transcription factor 9|astro:3
FGFR3|fibroblast growth factor receptor 3|astro:3
ATP1A2|ATPase Na+/K+ transporting subunit alpha 2|astro:4
GLUL|glutamate-ammonia ligase|astro:5,oligo:1
FOXJ1|forkhead box J1|epen:6
RARRES2|retinoic acid receptor responder 2|epen:3
CFAP44|cilia and flagella associated protein 44|epen:3
TTR|transthyretin|epen:4
MBP|myelin basic protein|oligo:12,imoligo:5,cop:1.5
MOBP|myelin associated oligodendrocyte basic protein|oligo:8,imoligo:2
PLP1|proteolipid protein 1|oligo:14,imoligo:6,cop:3,opc:1
MOG|myelin oligodendrocyte glycoprotein|oligo:5
MAG|myelin associated glycoprotein|oligo:5,imoligo:2
CNP|2',3'-cyclic nucleotide 3' phosphodiesterase|oligo:5,cop:2
ST18|ST18 C2H2C-type zinc finger transcription factor|oligo:4,imoligo:3,st18:3
OPALIN|oligodendrocytic myelin paranodal and inner loop protein|opalin:6
PLEKHG1|pleckstrin homology and RhoGEF domain containing G1|plekhg1:4
CLDN11|claudin 11|oligo:5
ERMN|ermin|oligo:4
SOX10|SRY-box transcription factor 10|olig_lineage:4
OLIG1|oligodendrocyte transcription factor 1|olig_lineage:3
OLIG2|oligodendrocyte transcription factor 2|olig_lineage:3
PDGFRA|platelet derived growth factor receptor alpha|opc:6,vlmc:2
CSPG4|chondroitin sulfate proteoglycan 4|opc:3,peri:1.5
VCAN|versican|opc:4
GPR17|G protein-coupled receptor 17|cop:6
BCAS1|brain enriched myelin associated protein 1|cop:4,imoligo:3
TNS3|tensin 3|opc:2,cop:2
CX3CR1|C-X3-C motif chemokine receptor 1|micro:5,mono:2
P2RY12|purinergic receptor P2Y12|micro:6
CSF1R|colony stimulating factor 1 receptor|micro:5,bam:5,mono:3
C1QA|complement C1q A chain|micro:4,bam:6
C1QB|complement C1q B chain|micro:4,bam:6
TMEM119|transmembrane protein 119|micro:4
AIF1|allograft inflammatory factor 1|micro:3,bam:3,mono:3
PTPRC|protein tyrosine phosphatase receptor type C|immune:3
MRC1|mannose receptor C-type 1|bam:6
CD163|CD163 molecule|bam:5
LYVE1|lymphatic vessel endothelial hyaluronan receptor 1|bam:3
LYZ|lysozyme|mono:6
CD14|CD14 molecule|mono:4
CD3E|CD3 epsilon subunit of T-cell receptor complex|tcell:5
CD2|CD2 molecule|tcell:3
MS4A1|membrane spanning 4-domains A1|bcell:5
CD79A|CD79a molecule|bcell:4
CLDN5|claudin 5|endo:7
FLT1|fms related receptor tyrosine kinase 1|endo:6
PECAM1|platelet and endothelial cell adhesion molecule 1|endo:4
VWF|von Willebrand factor|endo:4
SLC2A1|solute carrier family 2 member 1|endo:4
ABCB1|ATP binding cassette subfamily B member 1|endo:3
ESAM|endothelial cell adhesion molecule|endo:3
MECOM|MDS1 and EVI1 complex locus|endo:2
PDGFRB|platelet derived growth factor receptor beta|peri:5,smc:2,vlmc:2
RGS5|regulator of G protein signaling 5|peri:6,smc:2
KCNJ8|potassium inwardly rectifying channel subfamily J member 8|peri:4
ABCC9|ATP binding cassette subfamily C member 9|peri:4
NOTCH3|notch receptor 3|peri:3,smc:4
ACTA2|actin alpha 2, smooth muscle|smc:8
MYH11|myosin heavy chain 11|smc:6
TAGLN|transgelin|smc:6
DCN|decorin|vlmc:6
LUM|lumican|vlmc:5
COL1A2|collagen type I alpha 2 chain|vlmc:5
COL1A1|collagen type I alpha 1 chain|vlmc:4
SLC6A13|solute carrier family 6 member 13|vlmc:4
PTGDS|prostaglandin D2 synthase|vlmc:5,oligo:1
CNR1|cannabinoid receptor 1|msn:2,cx_gaba:3
HTR2C|5-hydroxytryptamine receptor 2C|msn:1.5,strv:1
NRGN|neurogranin|msn:3,ctx_glut:3
RELN|reelin|cx_gaba:2,ls_gaba:1
NXPH1|neurexophilin 1|lhx6:2
NXPH4|neurexophilin 4|gpe_proto:1
CRHBP|corticotropin releasing hormone binding protein|sst:1.5
ACTB|actin beta|all:3
GAPDH|glyceraldehyde-3-phosphate dehydrogenase|all:2
"""

_OTHER = """
KCNC1|potassium voltage-gated channel subfamily C member 1
KCNC2|potassium voltage-gated channel subfamily C member 2
KCNA1|potassium voltage-gated channel subfamily A member 1
KCNAB1|potassium voltage-gated channel subfamily A regulatory beta subunit 1
KCND2|potassium voltage-gated channel subfamily D member 2
KCNH7|potassium voltage-gated channel subfamily H member 7
KCNK2|potassium two pore domain channel subfamily K member 2
KCNMB2|potassium calcium-activated channel subfamily M regulatory beta subunit 2
KCNQ5|potassium voltage-gated channel subfamily Q member 5
KCNT2|potassium sodium-activated channel subfamily T member 2
SCN1A|sodium voltage-gated channel alpha subunit 1
SCN4B|sodium voltage-gated channel beta subunit 4
CACNA1E|calcium voltage-gated channel subunit alpha1 E
CACNA2D3|calcium voltage-gated channel auxiliary subunit alpha2delta 3
HCN1|hyperpolarization activated cyclic nucleotide gated potassium channel 1
GRIA1|glutamate ionotropic receptor AMPA type subunit 1
GRIA2|glutamate ionotropic receptor AMPA type subunit 2
GRIA3|glutamate ionotropic receptor AMPA type subunit 3
GRIA4|glutamate ionotropic receptor AMPA type subunit 4
GRIK1|glutamate ionotropic receptor kainate type subunit 1
GRIK2|glutamate ionotropic receptor kainate type subunit 2
GRIK3|glutamate ionotropic receptor kainate type subunit 3
GRIN2A|glutamate ionotropic receptor NMDA type subunit 2A
GRIN2B|glutamate ionotropic receptor NMDA type subunit 2B
GRIN3A|glutamate ionotropic receptor NMDA type subunit 3A
GRM1|glutamate metabotropic receptor 1
GRM3|glutamate metabotropic receptor 3
GRM5|glutamate metabotropic receptor 5
GRM8|glutamate metabotropic receptor 8
GABRA1|gamma-aminobutyric acid type A receptor subunit alpha1
GABRA2|gamma-aminobutyric acid type A receptor subunit alpha2
GABRA5|gamma-aminobutyric acid type A receptor subunit alpha5
GABRB2|gamma-aminobutyric acid type A receptor subunit beta2
GABRG3|gamma-aminobutyric acid type A receptor subunit gamma3
GABRD|gamma-aminobutyric acid type A receptor subunit delta
GABRQ|gamma-aminobutyric acid type A receptor subunit theta
CHRNA3|cholinergic receptor nicotinic alpha 3 subunit
CHRNA4|cholinergic receptor nicotinic alpha 4 subunit
CHRNA7|cholinergic receptor nicotinic alpha 7 subunit
CHRM1|cholinergic receptor muscarinic 1
CHRM2|cholinergic receptor muscarinic 2
CHRM3|cholinergic receptor muscarinic 3
HTR1F|5-hydroxytryptamine receptor 1F
HTR2A|5-hydroxytryptamine receptor 2A
HTR4|5-hydroxytryptamine receptor 4
HTR7|5-hydroxytryptamine receptor 7
ADRA1A|adrenoceptor alpha 1A
ADRA2A|adrenoceptor alpha 2A
OPRK1|opioid receptor kappa 1
OPRD1|opioid receptor delta 1
NPY1R|neuropeptide Y receptor Y1
NPY2R|neuropeptide Y receptor Y2
SSTR2|somatostatin receptor 2
TACR1|tachykinin receptor 1
TACR3|tachykinin receptor 3
CRHR2|corticotropin releasing hormone receptor 2
GPR83|G protein-coupled receptor 83
GPR101|G protein-coupled receptor 101
GPR149|G protein-coupled receptor 149
GPR155|G protein-coupled receptor 155
NTRK2|neurotrophic receptor tyrosine kinase 2
NTRK3|neurotrophic receptor tyrosine kinase 3
BDNF|brain derived neurotrophic factor
NTNG1|netrin G1
NTNG2|netrin G2
CDH6|cadherin 6
CDH8|cadherin 8
CDH9|cadherin 9
CDH13|cadherin 13
CDH18|cadherin 18
CDH20|cadherin 20
CDH22|cadherin 22
PCDH8|protocadherin 8
PCDH9|protocadherin 9
PCDH10|protocadherin 10
PCDH17|protocadherin 17
SEMA3A|semaphorin 3A
SEMA3C|semaphorin 3C
SEMA3E|semaphorin 3E
SEMA6D|semaphorin 6D
PLXND1|plexin D1
EPHA3|EPH receptor A3
EPHA5|EPH receptor A5
EPHA6|EPH receptor A6
EPHB1|EPH receptor B1
ROBO1|roundabout guidance receptor 1
ROBO2|roundabout guidance receptor 2
SLIT2|slit guidance ligand 2
SLIT3|slit guidance ligand 3
UNC5C|unc-5 netrin receptor C
UNC5D|unc-5 netrin receptor D
DCC|DCC netrin 1 receptor
NRP1|neuropilin 1
NRP2|neuropilin 2
NRXN3|neurexin 3
NLGN1|neuroligin 1
CNTNAP2|contactin associated protein 2
CNTNAP3|contactin associated protein family member 3
CNTNAP4|contactin associated protein family member 4
CNTN5|contactin 5
CNTN6|contactin 6
LRRTM4|leucine rich repeat transmembrane neuronal 4
SYT2|synaptotagmin 2
SYT6|synaptotagmin 6
SYT10|synaptotagmin 10
CPLX3|complexin 3
VAMP1|vesicle associated membrane protein 1
CBLN1|cerebellin 1 precursor
CBLN2|cerebellin 2 precursor
CBLN4|cerebellin 4 precursor
NECAB1|N-terminal EF-hand calcium binding protein 1
NECAB2|N-terminal EF-hand calcium binding protein 2
PCP4|Purkinje cell protein 4
VGF|VGF nerve growth factor inducible
SCG2|secretogranin II
CHGA|chromogranin A
ZFHX3|zinc finger homeobox 3
ZFHX4|zinc finger homeobox 4
ZEB2|zinc finger E-box binding homeobox 2
TSHZ1|teashirt zinc finger homeobox 1
TSHZ2|teashirt zinc finger homeobox 2
NR2F1|nuclear receptor subfamily 2 group F member 1
NR2F2|nuclear receptor subfamily 2 group F member 2
NR4A1|nuclear receptor subfamily 4 group A member 1
NFIA|nuclear factor I A
NFIB|nuclear factor I B
SOX2|SRY-box transcription factor 2
SOX5|SRY-box transcription factor 5
SOX8|SRY-box transcription factor 8
DLX1|distal-less homeobox 1
DLX5|distal-less homeobox 5
DLX6|distal-less homeobox 6
POU3F2|POU class 3 homeobox 2
POU6F2|POU class 6 homeobox 2
ESR1|estrogen receptor 1
AR|androgen receptor
IRX3|iroquois homeobox 3
LMO3|LIM domain only 3
BNC2|basonuclin zinc finger protein 2
ETV1|ETS variant transcription factor 1
MAF|MAF bZIP transcription factor
MAFB|MAF bZIP transcription factor B
NPAS3|neuronal PAS domain protein 3
BHLHE22|basic helix-loop-helix family member e22
PBX3|PBX homeobox 3
TOX|thymocyte selection associated high mobility group box
RBFOX1|RNA binding fox-1 homolog 1
ELAVL2|ELAV like RNA binding protein 2
NEFL|neurofilament light chain
NEFM|neurofilament medium chain
NEFH|neurofilament heavy chain
INA|internexin neuronal intermediate filament protein alpha
CALN1|calneuron 1
CHN2|chimerin 2
CPNE4|copine 4
CPNE5|copine 5
DACH1|dachshund family transcription factor 1
DGKB|diacylglycerol kinase beta
ERBB4|erb-b2 receptor tyrosine kinase 4
GRP|gastrin releasing peptide
HPCA|hippocalcin
IGFBP5|insulin like growth factor binding protein 5
PTPRK|protein tyrosine phosphatase receptor type K
PTPRT|protein tyrosine phosphatase receptor type T
RASGRP2|RAS guanyl releasing protein 2
RGS4|regulator of G protein signaling 4
RORA|RAR related orphan receptor A
RYR1|ryanodine receptor 1
SPON1|spondin 1
TENM3|teneurin transmembrane protein 3
THSD7B|thrombospondin type 1 domain containing 7B
TMEM132D|transmembrane protein 132D
TRPC3|transient receptor potential cation channel subfamily C member 3
VWC2L|von Willebrand factor C domain containing protein 2 like
WIF1|WNT inhibitory factor 1
ZNF804B|zinc finger protein 804B
DPP10|dipeptidyl peptidase like 10
DPP6|dipeptidyl peptidase like 6
PDE7B|phosphodiesterase 7B
PDE8B|phosphodiesterase 8B
ADCY5|adenylate cyclase 5
GNAL|G protein subunit alpha L
CAMK2A|calcium/calmodulin dependent protein kinase II alpha
CAMK4|calcium/calmodulin dependent protein kinase IV
ID4|inhibitor of DNA binding 4, HLH protein
CRYM|crystallin mu
NEUROD2|neuronal differentiation 2
PTPRZ1|protein tyrosine phosphatase receptor type Z1
APOE|apolipoprotein E
CLU|clusterin
SPARCL1|SPARC like 1
SLC4A4|solute carrier family 4 member 4
SLC14A1|solute carrier family 14 member 1
GPC5|glypican 5
RANBP3L|RAN binding protein 3 like
ETNPPL|ethanolamine-phosphate phospho-lyase
ADGRV1|adhesion G protein-coupled receptor V1
LUZP2|leucine zipper protein 2
MEGF10|multiple EGF like domains 10
NKX6-2|NK6 homeobox 2
ENPP6|ectonucleotide pyrophosphatase/phosphodiesterase 6
TF|transferrin
ANLN|anillin actin binding protein
TMEM144|transmembrane protein 144
SLC5A11|solute carrier family 5 member 11
FOLH1|folate hydrolase 1
APOD|apolipoprotein D
KLK6|kallikrein related peptidase 6
S100B|S100 calcium binding protein B
CD74|CD74 molecule
APBB1IP|amyloid beta precursor protein binding family B member 1 interacting protein
DOCK8|dedicator of cytokinesis 8
ARHGAP15|Rho GTPase activating protein 15
INPP5D|inositol polyphosphate-5-phosphatase D
LYN|LYN proto-oncogene, Src family tyrosine kinase
CD247|CD247 molecule
IL7R|interleukin 7 receptor
ATP10A|ATPase phospholipid transporting 10A (putative)
FN1|fibronectin 1
CEMIP|cell migration inducing hyaluronidase 1
TBX18|T-box transcription factor 18
COL4A1|collagen type IV alpha 1 chain
LAMA2|laminin subunit alpha 2
SYNPR|synaptoporin
SV2C|synaptic vesicle glycoprotein 2C
RIT2|Ras like without CAAX 2
GFRA1|GDNF family receptor alpha 1
GFRA2|GDNF family receptor alpha 2
RET|ret proto-oncogene
LGR5|leucine rich repeat containing G protein-coupled receptor 5
HS3ST4|heparan sulfate-glucosamine 3-sulfotransferase 4
TRHDE|thyrotropin releasing hormone degrading enzyme
SLC6A1|solute carrier family 6 member 1
SLC6A11|solute carrier family 6 member 11
SLC6A5|solute carrier family 6 member 5
"""


@dataclass(frozen=True)
class Gene:
    """One gene of the catalogue; ``rules`` maps a cell-type tag to expected counts per cell."""

    symbol: str
    description: str
    rules: dict[str, float] = field(default_factory=dict)

    @property
    def is_marker(self) -> bool:
        return bool(self.rules)


def _parse(table: str) -> list[Gene]:
    genes = []
    for line in table.strip().splitlines():
        parts = line.split("|")
        rules = {}
        if len(parts) > 2 and parts[2]:
            for item in parts[2].split(","):
                tag, level = item.split(":")
                rules[tag] = float(level)
        genes.append(Gene(parts[0], parts[1], rules))
    return genes


MARKER_GENES: list[Gene] = _parse(_MARKERS)
OTHER_GENES: list[Gene] = _parse(_OTHER)
REAL_GENES: list[Gene] = MARKER_GENES + OTHER_GENES
GENE_BY_SYMBOL: dict[str, Gene] = {g.symbol: g for g in REAL_GENES}
assert len(GENE_BY_SYMBOL) == len(REAL_GENES), "duplicate symbol in the demo gene catalogue"

#: Genes shown in every spatial dataset's ``example_gene_expression.csv``.
EXAMPLE_GENES = ["DRD1", "DRD2", "PENK", "TAC1", "MBP", "GAD2", "SLC17A7", "AQP4"]


def filler_genes(n: int) -> list[Gene]:
    """``n`` further genes in NCBI naming styles (zinc fingers, transmembrane proteins, LOC loci)."""
    out: list[Gene] = []
    families = [
        ("ZNF{}", "zinc finger protein {}", range(100, 900, 3)),
        ("TMEM{}", "transmembrane protein {}", range(30, 260, 2)),
        ("CCDC{}", "coiled-coil domain containing {}", range(10, 190, 2)),
        ("FAM{}A", "family with sequence similarity {} member A", range(20, 230, 3)),
        ("KIAA{}", "KIAA{} uncharacterized protein", range(1100, 2100, 9)),
    ]
    used = set(GENE_BY_SYMBOL)
    for sym_fmt, desc_fmt, numbers in families:
        for k in numbers:
            sym = sym_fmt.format(k)
            if sym not in used:
                used.add(sym)
                out.append(Gene(sym, desc_fmt.format(k)))
            if len(out) >= n:
                return out
    k = 0
    while len(out) < n:
        loc = 100_000_000 + 1_237 * k + 11
        out.append(Gene(f"LOC{loc}", f"uncharacterized LOC{loc}"))
        k += 1
    return out


#: Number ranges of the release's identifier styles: Ensembl stable ids are a prefix, five zeros and six digits
#: (``ENSG00000184845``, ``ENSMMUG00000012345``, ``ENSMUSG00000021478``); NCBI Gene ids of marmoset genes are
#: nine-digit numbers from 100,3xx,xxx, of macaque genes six digits from 574,xxx; other spaces (the aligned
#: nuclei, mouse) four to six digits.
_ENSEMBL_RANGES = {"ENSG": (100_000, 290_000), "ENST": (250_000, 700_000), "ENSMMUG": (1, 65_000),
                   "ENSMMUT": (1, 95_000), "ENSMUSG": (1, 120_000), "ENSMUST": (1, 240_000)}
_NCBI_RANGES = {"marmoset": (100_380_000, 100_420_000), "macaque": (574_000, 722_000)}


@lru_cache(maxsize=1)
def _catalogue_names() -> list[str]:
    return sorted({g.symbol.upper() for g in REAL_GENES + filler_genes(6000) if not g.symbol.startswith("LOC")})


def _numbered(space: str, low: int, high: int) -> dict[str, int]:
    """Every catalogue name numbered in ``low..high-1`` from a hash of (space, name); a collision moves to the
    next free number, visiting names in sorted order so each name always gets the same number."""
    used: set[int] = set()
    out: dict[str, int] = {}
    span = high - low
    for name in _catalogue_names():
        n = low + stable_int(space + name, 12) % span
        while n in used:
            n = low + (n - low + 1) % span
        used.add(n)
        out[name] = n
    return out


@lru_cache(maxsize=16)
def _ensembl_table(prefix: str) -> dict[str, int]:
    return _numbered(prefix, *_ENSEMBL_RANGES.get(prefix, (1, 300_000)))


def ensembl_id(prefix: str, symbol: str) -> str:
    """Stable synthetic Ensembl stable id in the release's style, e.g. ``ENSG00000184845``; unique per prefix.

    Symbols outside the catalogue (mouse ``Gm`` genes) are numbered from 300,000 up, apart from it.
    """
    number = _ensembl_table(prefix).get(symbol.upper())
    if number is None:
        number = 300_000 + stable_int(prefix + symbol, 12) % 600_000
    return f"{prefix}{number:011d}"


@lru_cache(maxsize=8)
def _ncbi_table(space: str) -> dict[str, int]:
    if space in _NCBI_RANGES:
        return _numbered(space, *_NCBI_RANGES[space])
    # four- to six-digit numbers (the human-style ids of the aligned nuclei, mouse)
    used: set[int] = set()
    out: dict[str, int] = {}
    for name in _catalogue_names():
        n = stable_int(space + name, 4 + stable_int("len" + space + name, 1) % 3)
        while n in used:
            n += 1
        used.add(n)
        out[name] = n
    return out


def ncbi_id(space: str, symbol: str) -> int:
    """Stable synthetic NCBI Gene number for ``symbol`` within an id ``space`` (a species); unique per space.

    ``LOC<n>`` loci keep their number, as NCBI names them after their Gene ID; other unknown symbols
    (mouse ``Gm`` genes) get a 9-digit number.
    """
    if symbol.startswith("LOC") and symbol[3:].isdigit():
        return int(symbol[3:])
    table = _ncbi_table(space)
    return table.get(symbol.upper()) or stable_int(space + symbol, 9)


def mouse_symbol(symbol: str) -> str:
    """Mouse-style capitalisation of a human symbol (``SLC17A7`` -> ``Slc17a7``)."""
    return symbol[:1] + symbol[1:].lower()
