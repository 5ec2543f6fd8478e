# S2C with PerSAM as CPM's prompt back-end (configs/_base_/backends/persam.py): the same caches
# as the plain S2C config (PerSAM adds no weights and needs no early features).
_base_ = ['./s2c_resnet38d_1xb8-40e_voc12aug-256x256.py']

model = dict(
    cpm=dict(
        backend=dict(_delete_=True, type='persam', model_type='vit_h',
                     checkpoint='checkpoints/sam_vit_h_4b8939.pth', reference_threshold=0.5,
                     location_prior='add', attn_sim_frame='input_frame', te_alias='official'),
        selection='persam'))
