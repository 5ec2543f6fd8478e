# S2C with PerSAM-F as CPM's prompt back-end (configs/_base_/backends/persam_f.py): the same
# caches as the plain S2C config. The weight fit runs for every prompt of every CPM batch.
_base_ = ['./s2c_resnet38d_1xb8-40e_voc12aug-256x256.py']

model = dict(
    cpm=dict(
        backend=dict(_delete_=True, type='persam_f', model_type='vit_h',
                     checkpoint='checkpoints/sam_vit_h_4b8939.pth', reference_threshold=0.5,
                     location_prior='add', fit_steps=1000, fit_lr=1e-3),
        selection='persam_f'))
